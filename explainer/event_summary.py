"""One line per stored event for the admin, read from a few JSON keys so that megabytes of activations stay put.

The annotations run inside the database (`payload->>'layer'` and so on); the payload column itself is deferred.
"""
from __future__ import annotations

import json

from django.db.models import Case, QuerySet, TextField, Value, When
from django.db.models.fields.json import KT
from django.db.models.functions import Substr

from .models import TraceEvent

TEXT_PREVIEW_CHARS = 140
ACTIVATION_KEYS = ("layer", "layers", "shape", "encoding", "shards")
NOTHING = Value(None, output_field=TextField())


def with_event_summary(queryset: QuerySet, *, activations: bool = True) -> QuerySet:
    """`queryset` of events without their payloads, annotated with what `event_summary` needs.

    A JSON key can only be read by reading the whole payload, which for inline activations is megabytes: completion
    keys are read for completion events only (the database evaluates a CASE's THEN only where it holds), and
    activation keys only when `activations` is set (one trace's events, not a long list).
    """
    def completion_only(expression):
        return Case(When(event_type="completion", then=expression), default=NOTHING, output_field=TextField())

    annotations = {
        "summary_model": completion_only(KT("payload__model")),
        "summary_text": completion_only(Substr(KT("payload__text"), 1, TEXT_PREVIEW_CHARS + 1)),
    }
    for name in ACTIVATION_KEYS:
        annotations[f"summary_{name}"] = KT(f"payload__{name}") if activations else NOTHING
    return queryset.defer("payload").annotate(**annotations)


def event_summary(event: TraceEvent) -> str:
    """`completion`: model and the start of the text; `activations`: layer, shape and where the rows are."""
    if event.event_type == "completion":
        text = event.summary_text or ""
        if len(text) > TEXT_PREVIEW_CHARS:
            text = text[:TEXT_PREVIEW_CHARS].rstrip() + "…"
        return f"{event.summary_model}: “{text}”"
    if event.event_type == "activations":
        if event.summary_layer is None and event.summary_shards is None:
            return "activations (layer and shape on the event's page)"
        if event.summary_shards:
            layers = ", ".join(str(v) for v in _json_list(event.summary_layers)) or "?"
            return f"layers {layers}, {len(_json_list(event.summary_shards))} shards in Redis"
        shape = "×".join(str(v) for v in _json_list(event.summary_shape))
        return f"layer {event.summary_layer}, {shape} rows, {event.summary_encoding}"
    return "—"


def _json_list(text: str | None) -> list:
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return []
    return value if isinstance(value, list) else []
