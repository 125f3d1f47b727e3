"""One line per stored event for the admin, read from a few JSON keys so that megabytes of activations stay put.

The annotations run inside the database (`payload->>'layer'` and so on); the payload column itself is deferred.
"""
from __future__ import annotations

import json

from django.db.models import QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import Substr

from .models import TraceEvent

TEXT_PREVIEW_CHARS = 140


def with_event_summary(queryset: QuerySet) -> QuerySet:
    """`queryset` of events without their payloads, annotated with what `event_summary` needs."""
    return queryset.defer("payload").annotate(
        summary_model=KT("payload__model"),
        summary_text=Substr(KT("payload__text"), 1, TEXT_PREVIEW_CHARS + 1),
        summary_layer=KT("payload__layer"),
        summary_layers=KT("payload__layers"),
        summary_shape=KT("payload__shape"),
        summary_encoding=KT("payload__encoding"),
        summary_shards=KT("payload__shards"),
    )


def event_summary(event: TraceEvent) -> str:
    """`completion`: model and the start of the text; `activations`: layer, shape and where the rows are."""
    if event.event_type == "completion":
        text = event.summary_text or ""
        if len(text) > TEXT_PREVIEW_CHARS:
            text = text[:TEXT_PREVIEW_CHARS].rstrip() + "…"
        return f"{event.summary_model}: “{text}”"
    if event.event_type == "activations":
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
