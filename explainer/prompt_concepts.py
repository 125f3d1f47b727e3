"""The prompt's concepts and how they interact, for a trace explained through the shadow model.

It runs in the attribute stage, after the features were valued through the model, because it needs that model
in-process (exact probabilities from its logits) and the trace's own token ids. The target is the first token the
model emitted after the prompt. The prompt's tokens are the shadow tokenizer's, with character offsets that place
each concept on them; they must be the first tokens of the trace's sequence (after at most one leading special
token, which some tokenizers add), or the trace records why it has no concepts. With `LLM_PROXY_URL` set, the
strongest groups are also checked against the serving provider, and each edge carries what it said (`provider`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cache

import numpy as np
from django.conf import settings

import attribution
from attribution.config import InteractionConfig
from attribution.endpoint import EndpointModel, provider_verify
from attribution.interactions import ProbabilityCache, TargetModel, concept_interactions

from .shadow import Shadow, verify_config
from .trace_data import Completion


@cache
def concept_config() -> attribution.ConceptConfig:
    return attribution.ConceptConfig.from_env()


@cache
def interaction_config() -> InteractionConfig:
    return InteractionConfig.from_env()


@cache
def probability_cache() -> ProbabilityCache:
    """One per worker process: a prompt explained again (a replay) costs no model calls."""
    return ProbabilityCache(interaction_config().cache_size)


@dataclass(frozen=True)
class PromptPlacement:
    """Where the prompt lies in the trace's sequence: after `offset` leading special tokens (0 or 1), one token per
    span of `spans` (characters of the prompt)."""

    offset: int
    spans: list[tuple[int, int]]

    @property
    def end(self) -> int:
        return self.offset + len(self.spans)


NOT_ALIGNED = {"skipped": "the prompt's tokens are not the first tokens of the trace's sequence"}


def concepts_of(shadow: Shadow, completion: Completion, sequence: np.ndarray) -> dict:
    """What `Trace.concepts` holds, through the in-process shadow model: the concepts, the interaction search's
    result and its cost, or `skipped`. The prompt is placed with the shadow tokenizer's offsets."""
    tokenizer = shadow.tokenizer
    if not completion.prompt.strip():
        return {"skipped": "the completion has no prompt"}
    if tokenizer is None:
        return {"skipped": "the shadow model has no tokenizer"}
    encoded = tokenizer(completion.prompt, return_offsets_mapping=True, add_special_tokens=False)
    ids = list(encoded["input_ids"])
    offset = next((k for k in (0, 1) if len(sequence) > k + len(ids) and list(sequence[k:k + len(ids)]) == ids),
                  None)
    if not ids or offset is None:
        return NOT_ALIGNED
    mask_id = next(t for t in (tokenizer.mask_token_id, tokenizer.unk_token_id, tokenizer.eos_token_id, 0)
                   if t is not None)
    placement = PromptPlacement(offset=offset, spans=[tuple(span) for span in encoded["offset_mapping"]])
    return _explained(shadow.model, completion, np.asarray(sequence), placement, mask_id,
                      target_text=tokenizer.decode([int(sequence[placement.end])]))


def concepts_via_endpoint(model: EndpointModel, completion: Completion, *,
                          mask_id: int) -> dict:
    """The same through an OpenAI-compatible endpoint (`SHADOW_ENDPOINT`), for traces no in-process model explains.

    No tokenizer is at hand here, so the prompt is placed with the completion's own tokens: the capture client
    sends the text of every token of the sequence, and the prompt's must spell the prompt exactly (after at most
    one leading special token).
    """
    if not completion.prompt.strip():
        return {"skipped": "the completion has no prompt"}
    if not completion.token_ids or len(completion.token_ids) != len(completion.tokens):
        return {"skipped": "the completion has no token ids for its tokens"}
    placement = prompt_placement(completion.tokens, completion.prompt)
    if placement is None:
        return NOT_ALIGNED
    return _explained(model, completion, np.asarray(completion.token_ids), placement, mask_id,
                      target_text=completion.tokens[placement.end])


def prompt_placement(tokens: list[str], prompt: str) -> PromptPlacement | None:
    """The prompt's tokens among `tokens` (the sequence's, as text), or None when they do not spell it exactly and
    leave at least one token (the emitted one) after it."""
    for offset in (0, 1):
        spans, position = [], 0
        for token in tokens[offset:]:
            if position == len(prompt) or not token or not prompt.startswith(token, position):
                break
            spans.append((position, position + len(token)))
            position += len(token)
        if spans and position == len(prompt) and offset + len(spans) < len(tokens):
            return PromptPlacement(offset=offset, spans=spans)
    return None


def _explained(model: TargetModel, completion: Completion, sequence: np.ndarray,
               placement: PromptPlacement, mask_id: int, *, target_text: str) -> dict:
    found = attribution.extract_concepts(completion.prompt, token_spans=placement.spans, config=concept_config())
    concepts = [attribution.Concept(**{**asdict(c), "tokens": tuple(t + placement.offset for t in c.tokens)})
                for c in found]
    end = placement.end
    target = int(sequence[end])
    result = concept_interactions(concepts, sequence[:end], target, model, mask_id=mask_id,
                                  config=interaction_config(), cache=probability_cache())
    edges = [{**asdict(e), "members": list(e.members), "member_drops": list(e.member_drops)} for e in result.edges]
    if settings.LLM_PROXY_URL and result.edges:
        checks = provider_verify(
            result.edges, concepts, completion.prompt, target_text, base_url=settings.LLM_PROXY_URL,
            model=settings.LLM_PROXY_MODEL or completion.model, top_k=verify_config().top_k,
            max_calls=settings.COST_MAX_PROVIDER_CALLS, timeout_s=settings.VERIFY_TIMEOUT_S,
            api_key=settings.LLM_PROXY_API_KEY)
        for edge, check in zip(edges, checks):  # the checks keep the edges' order
            edge["provider"] = {**asdict(check), "members": list(check.members)}
    return {
        "concepts": [{**asdict(c), "tokens": list(c.tokens)} for c in concepts],
        "target": {"id": target, "text": target_text, "position": end},
        "p0": result.p0, "drops": result.drops,
        "edges": edges,
        "calls": result.calls, "cache_hits": result.cache_hits, "rounds": result.rounds, "stopped": result.stopped,
    }
