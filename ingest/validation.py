"""Compiled validators for `/ingest` bodies, returning `{"path", "message"}` errors a client can act on."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from .activations import ActivationDataError, decode_inline_activations

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


@cache
def _validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _path(error: ValidationError) -> str:
    path = ""
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _message(error: ValidationError) -> str:
    if error.validator == "oneOf" and list(error.absolute_path) == ["payload"]:
        return "activations payload needs either inline data (layer, encoding, shape, data) or shards, not both"
    return error.message


def parse_body(body: bytes) -> Any:
    """Parse strict JSON: NaN and Infinity literals are refused rather than silently accepted."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not valid JSON")

    try:
        return json.loads(body, parse_constant=refuse)
    except (UnicodeDecodeError, ValueError) as exc:
        raise EventInvalid([{"path": "", "message": f"body is not valid JSON: {exc}"}]) from None


def validate_event(document: Any) -> IngestEvent:
    """Check an event against the schema, then decode inline arrays; raise `EventInvalid` with every error found."""
    errors = [
        {"path": _path(e), "message": _message(e)}
        for e in sorted(_validator().iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    ]
    if errors:
        raise EventInvalid(errors)
    payload = document["payload"]
    if document["event_type"] == "activations" and "data" in payload:
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
