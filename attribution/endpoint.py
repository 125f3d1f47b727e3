"""Probabilities from a model behind an OpenAI-compatible completions endpoint, for when the model is not in-process.

`EndpointModel` is the surrogate (`SHADOW_ENDPOINT`): a `interactions.TargetModel` that reads P(target | prompt)
exactly, as the log-probability the endpoint reports for `target` echoed after the prompt (`prompt` as token ids,
`echo: true`, `max_tokens: 0`): one call per masked prompt, no sampling.

`provider_verify` checks the strongest concept edges against the serving provider (`LLM_PROXY_URL`), which returns
only the top alternatives of the next token (`max_tokens` 1, `logprobs` 5): the masked prompts are text, and the
target is found by its text among the five. Every edge gets a label, `verified` (checked: the provider's
probabilities are recorded, and whether they agree), `skipped` (not among the top ones, or the provider does not
rank the target in its top five even unmasked, so no drop can be read), `budget_exhausted`, `baseline_failed` or
`group_failed`. A down or slow provider gives labelled evidence, never an exception.

Plain `urllib`, no Django: the library stays importable on its own.
"""
from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .concepts import Concept
from .interactions import InteractionEdge

MASK_TEXT = "[MASK]"
PROVIDER_TOP_LOGPROBS = 5


class EndpointError(RuntimeError):
    """The endpoint did not answer, or not with what was asked."""


def _completions_url(base_url: str) -> str:
    return base_url.rstrip("/") + "/v1/completions"


def _post(url: str, body: dict[str, Any], timeout_s: float, api_key: str = "") -> dict[str, Any]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise EndpointError(f"{url}: {exc}") from None


class EndpointModel:
    """`TargetModel` over `base_url`'s `/v1/completions`, scoring token-id prompts."""

    def __init__(self, base_url: str, *, model: str, timeout_s: float = 10.0, api_key: str = "") -> None:
        self.url = _completions_url(base_url)
        self.model, self.timeout_s, self.api_key = model, timeout_s, api_key
        self.name = f"{self.url}#{model}"

    def next_token_probabilities(self, prompts: Sequence[np.ndarray], target: int) -> np.ndarray:
        return np.array([self._probability([int(t) for t in prompt], target) for prompt in prompts])

    def _probability(self, ids: list[int], target: int) -> float:
        body = {"model": self.model, "prompt": [*ids, target], "max_tokens": 0, "echo": True, "logprobs": 0}
        answer = _post(self.url, body, self.timeout_s, self.api_key)
        try:
            return math.exp(answer["choices"][0]["logprobs"]["token_logprobs"][-1])
        except (KeyError, IndexError, TypeError) as exc:
            raise EndpointError(f"{self.url}: no log-probability for the echoed target ({exc!r})") from None


@dataclass(frozen=True)
class ProviderCheck:
    """What the provider said of one edge."""

    members: tuple[str, ...]
    label: str  # verified | skipped | budget_exhausted | baseline_failed | group_failed
    p0: float | None = None
    p_group: float | None = None
    agrees: bool | None = None  # the provider's drop for the group is positive, as the edge says
    reason: str = ""


def masked_text(prompt: str, concepts: Sequence[Concept]) -> str:
    """`prompt` with each concept's characters replaced by `MASK_TEXT` (by its own span, not by a text search)."""
    out, end = [], 0
    for concept in sorted(concepts, key=lambda c: c.start):
        out += [prompt[end:concept.start], MASK_TEXT]
        end = max(end, concept.end)
    return "".join(out) + prompt[end:]


def provider_verify(edges: Sequence[InteractionEdge], concepts: Sequence[Concept], prompt: str, target_text: str, *,
                    base_url: str, model: str, top_k: int, max_calls: int, timeout_s: float,
                    api_key: str = "") -> list[ProviderCheck]:
    """Check the `top_k` strongest of `edges` (they come strongest first) with at most `max_calls` provider calls,
    the unmasked baseline included."""
    url = _completions_url(base_url)
    by_id = {c.id: c for c in concepts}
    calls = 0

    def probability(text: str) -> float | None:
        """P(target) from the provider's top five, None when the target is not among them."""
        nonlocal calls
        calls += 1
        answer = _post(url, {"model": model, "prompt": text, "max_tokens": 1, "logprobs": PROVIDER_TOP_LOGPROBS},
                       timeout_s, api_key)
        try:
            top = answer["choices"][0]["logprobs"]["top_logprobs"][0]
        except (KeyError, IndexError, TypeError) as exc:
            raise EndpointError(f"{url}: no top log-probabilities ({exc!r})") from None
        return math.exp(top[target_text]) if target_text in top else None

    checked, rest = list(edges[:top_k]), list(edges[top_k:])
    skipped = [ProviderCheck(members=e.members, label="skipped", reason="not among the strongest") for e in rest]
    if not checked:
        return skipped
    if max_calls < 1:
        return [ProviderCheck(members=e.members, label="budget_exhausted") for e in checked] + skipped
    try:
        p0 = probability(prompt)
    except EndpointError as exc:
        return [ProviderCheck(members=e.members, label="baseline_failed", reason=str(exc)) for e in checked] + skipped
    if p0 is None:
        reason = "the provider does not rank the target in its top five for the whole prompt"
        return [ProviderCheck(members=e.members, label="skipped", reason=reason) for e in checked] + skipped
    results = []
    for edge in checked:
        if calls >= max_calls:
            results.append(ProviderCheck(members=edge.members, label="budget_exhausted", p0=round(p0, 6)))
            continue
        try:
            p_group = probability(masked_text(prompt, [by_id[m] for m in edge.members]))
        except EndpointError as exc:
            results.append(ProviderCheck(members=edge.members, label="group_failed", p0=round(p0, 6), reason=str(exc)))
            continue
        # Out of the top five when masked: the target fell below the fifth alternative, a drop by any reading.
        results.append(ProviderCheck(members=edge.members, label="verified", p0=round(p0, 6),
                                     p_group=None if p_group is None else round(p_group, 6),
                                     agrees=p_group is None or p_group < p0))
    return results + skipped
