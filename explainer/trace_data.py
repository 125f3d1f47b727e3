"""Typed views of a trace's stored events: what the load stage and the exports read."""
from __future__ import annotations

from dataclasses import dataclass, field

from .models import Trace
from .text import tokenize


@dataclass(frozen=True)
class Completion:
    model: str = ""
    model_hash: str = ""
    prompt: str = ""
    text: str = ""
    tokens: list[str] = field(default_factory=list)
    token_ids: list[int] | None = None
    tokenized_by_service: bool = False

    @property
    def prompt_tokens(self) -> list[str]:
        return tokenize(self.prompt)


def completion_of(trace: Trace) -> Completion:
    """The trace's latest completion event; tokens come from the service's tokenizer when the client sent none."""
    event = trace.events.filter(event_type="completion").order_by("-id").first()
    if event is None:
        return Completion()
    payload = event.payload
    tokens = payload.get("tokens")
    return Completion(
        model=payload["model"],
        model_hash=payload.get("model_hash", ""),
        prompt=payload.get("prompt", ""),
        text=payload["text"],
        tokens=tokens if tokens is not None else tokenize(payload["text"]),
        token_ids=payload.get("token_ids"),
        tokenized_by_service=tokens is None,
    )


def activation_payloads(trace: Trace) -> list[dict]:
    return list(trace.events.filter(event_type="activations").order_by("id").values_list("payload", flat=True))
