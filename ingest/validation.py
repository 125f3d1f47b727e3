"""Compiled validators for `/ingest` bodies, returning `{"path", "message"}` errors a client can act on.

Every size in the schema has a maximum. The ones an operator may raise come from settings (`MAX_TRACE_TOKENS`,
`MAX_LAYERS`, `MAX_ACTIVATION_WIDTH`, `MAX_TEXT_CHARS`) and are written into the schema when it is compiled, so the
error names the limit and the setting that holds it.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Callable

import fastjsonschema
import orjson
from django.conf import settings
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from explainer.activations import ActivationDataError, decode_inline_activations

SCHEMA_PATH = Path(__file__).parent / "schemas" / "event.schema.json"


@dataclass(frozen=True)
class IngestEvent:
    trace_id: str
    event_type: str
    payload: dict[str, Any]
    granularity: str | None

    @property
    def finalizes(self) -> bool:
        return self.event_type == "finalize" or (
            self.event_type == "completion" and bool(self.payload.get("final"))
        )


class EventInvalid(Exception):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(errors[0]["message"] if errors else "invalid event")
        self.errors = errors


@dataclass(frozen=True)
class Limits:
    max_trace_tokens: int
    max_layers: int
    max_activation_width: int
    max_text_chars: int

    @classmethod
    def from_settings(cls) -> "Limits":
        return cls(settings.MAX_TRACE_TOKENS, settings.MAX_LAYERS, settings.MAX_ACTIVATION_WIDTH,
                   settings.MAX_TEXT_CHARS)


# Where each configurable limit goes in the schema: (path of keys, setting, value from the limits).
_LIMITS = (
    (("completion", "prompt", "maxLength"), "MAX_TEXT_CHARS", lambda m: m.max_text_chars),
    (("completion", "text", "maxLength"), "MAX_TEXT_CHARS", lambda m: m.max_text_chars),
    (("completion", "tokens", "maxItems"), "MAX_TRACE_TOKENS", lambda m: m.max_trace_tokens + 1),
    (("completion", "token_ids", "maxItems"), "MAX_TRACE_TOKENS", lambda m: m.max_trace_tokens + 1),
    (("activations", "layers", "maxItems"), "MAX_LAYERS", lambda m: m.max_layers),
    (("activations", "token_offset", "maximum"), "MAX_TRACE_TOKENS", lambda m: m.max_trace_tokens - 1),
    (("activations", "shape", "prefixItems", 0, "maximum"), "MAX_TRACE_TOKENS", lambda m: m.max_trace_tokens),
    (("activations", "shape", "prefixItems", 1, "maximum"), "MAX_ACTIVATION_WIDTH",
     lambda m: m.max_activation_width),
    (("activations", "tokens", "maximum"), "MAX_TRACE_TOKENS", lambda m: m.max_trace_tokens),
    (("activations", "d_model", "maximum"), "MAX_ACTIVATION_WIDTH", lambda m: m.max_activation_width),
)


@cache
def _validator(limits: Limits) -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    for (definition, *keys), _, value in _LIMITS:
        node = schema["$defs"][definition]["properties"]
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value(limits)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@cache
def _fast_check(limits: Limits) -> Callable[[Any], Any]:
    """fastjsonschema's compiled check of the same schema: about 20x faster on a valid body, which is nearly every
    body. It knows draft-07, not 2020-12, so it compiles a translation (`_as_draft7`); jsonschema stays the reference
    and writes the errors whenever this check refuses (a test keeps the two in agreement)."""
    return fastjsonschema.compile(_as_draft7(_validator(limits).schema), use_formats=False, use_default=False)


def _as_draft7(node: Any) -> Any:
    """A copy of a schema with 2020-12's `prefixItems` in draft-07's form (`items` as an array); nothing else in
    the event schema differs between the two drafts."""
    if isinstance(node, list):
        return [_as_draft7(item) for item in node]
    if not isinstance(node, dict):
        return node
    translated = {("items" if key == "prefixItems" else key): _as_draft7(value) for key, value in node.items()}
    if "$schema" in translated:
        translated["$schema"] = "http://json-schema.org/draft-07/schema#"
    return translated


def event_schema(limits: Limits) -> dict[str, Any]:
    """The JSON Schema bodies are checked against, with these limits written in (what the API documents): a copy,
    so the caller may rewrite it."""
    return copy.deepcopy(_validator(limits).schema)


def _path(error: ValidationError) -> str:
    path = ""
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _message(error: ValidationError) -> str:
    if error.validator == "oneOf" and list(error.absolute_path) == ["payload"]:
        return "activations payload needs either inline data (layer, encoding, shape, data) or shards, not both"
    if error.validator in ("maximum", "maxItems", "maxLength"):
        schema_path = [k for k in error.relative_schema_path if k not in ("properties", "items")]
        for (_, *keys), setting, _ in _LIMITS:
            if schema_path[-len(keys):] == keys:
                return f"{error.message} (the limit is set by {setting})"
    return error.message


_NON_FINITE = (b"NaN", b"Infinity")


def parse_body(body: bytes) -> Any:
    """Parse strict JSON (RFC 8259, UTF-8) with orjson, several times faster than the standard library on an
    activations body, and stricter where it matters: NaN, Infinity, numbers that overflow to infinity, lone
    surrogates and nesting deeper than 1,024 levels are all 400s. The standard library took an overflowing number
    for infinity and kept a lone surrogate, and deep nesting overflowed its stack: a 500."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        reason = str(exc)
        if body.startswith(_NON_FINITE, exc.pos):  # orjson only says "unexpected character" there
            reason = f"NaN and Infinity are not JSON numbers: line {exc.lineno} column {exc.colno} (char {exc.pos})"
        raise EventInvalid([{"path": "", "message": f"body is not valid JSON: {reason}"}]) from None


def validate_event(document: Any) -> IngestEvent:
    """Check an event against the schema, then decode inline arrays; raise `EventInvalid` with every error found."""
    limits = Limits.from_settings()
    try:
        _fast_check(limits)(document)
    except fastjsonschema.JsonSchemaException:
        errors = [
            {"path": _path(e), "message": _message(e)}
            for e in sorted(_validator(limits).iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
        ]
        if errors:
            raise EventInvalid(errors) from None
    payload = document["payload"]
    if document["event_type"] == "completion" and not payload["text"] and not payload.get("tokens"):
        raise EventInvalid([{"path": "payload.text", "message": "the completion is empty: send its text (or tokens)"}])
    if document["event_type"] == "activations":
        _check_extent(payload, limits)
        if "data" in payload:
            try:
                decode_inline_activations(payload)
            except ActivationDataError as exc:
                raise EventInvalid([{"path": exc.path, "message": exc.message}]) from None
    return IngestEvent(
        trace_id=document["trace_id"],
        event_type=document["event_type"],
        payload=payload,
        granularity=document.get("granularity"),
    )


def _check_extent(payload: dict[str, Any], limits: Limits) -> None:
    """`token_offset` plus the rows sent must stay within one trace's positions."""
    rows = payload["shape"][0] if "data" in payload else payload.get("tokens", 0)
    offset = payload.get("token_offset", 0)
    if offset + rows > limits.max_trace_tokens:
        raise EventInvalid([{"path": "payload.token_offset", "message": (
            f"token_offset {offset} + {rows} rows exceeds the {limits.max_trace_tokens} positions a trace may have "
            f"(the limit is set by MAX_TRACE_TOKENS)")}])
