"""Group masking: synergy found where concepts stand in for each other, within the call budget, cached, seeded."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, strategies as st

from attribution.concepts import Concept
from attribution.config import InteractionConfig
from attribution.interactions import Interactions, ProbabilityCache, concept_interactions, mask_positions

MASK = 0
TARGET = 99
# Prompt: filler 1, concepts A..F at positions 1..6 (A spans two tokens), filler 2.
PROMPT = np.array([1, 10, 11, 20, 30, 40, 50, 60, 2])
CONCEPTS = [Concept(id=f"c{i}", text=name, label="TEST", start=0, end=1, tokens=tokens)
            for i, (name, tokens) in enumerate([("A", (1, 2)), ("B", (3,)), ("C", (4,)), ("D", (5,)),
                                                 ("E", (6,)), ("F", (7,))])]


class PlantedModel:
    """P(target) = 0.9 while A (10, 11) or B (20) is in the prompt, else 0.2; minus 0.3 without C (30)."""

    name = "planted"

    def __init__(self) -> None:
        self.calls = 0

    def next_token_probabilities(self, prompts: Sequence[np.ndarray], target: int) -> np.ndarray:
        self.calls += len(prompts)
        out = []
        for prompt in prompts:
            present = set(prompt.tolist())
            p = 0.9 if ({10, 11} <= present or 20 in present) else 0.2
            out.append(p - (0.0 if 30 in present else 0.3))
        return np.array(out)


def search(model: PlantedModel | None = None, **settings) -> Interactions:
    """The search with a fresh cache, and no low-gain stop unless asked for."""
    config = InteractionConfig(**{"low_gain_streak": 100, **settings})
    return concept_interactions(CONCEPTS, PROMPT, TARGET, model or PlantedModel(), mask_id=MASK, config=config)


def test_concepts_that_stand_in_for_each_other_form_an_edge() -> None:
    result = search(group_size=2)
    assert result.p0 == pytest.approx(0.9)
    assert result.drops["c0"] == 0 and result.drops["c1"] == 0 and result.drops["c2"] == pytest.approx(0.3)
    [edge] = result.edges
    assert edge.members == ("c0", "c1")
    assert edge.p_group == pytest.approx(0.2) and edge.synergy == pytest.approx(0.7)
    assert edge.weight == pytest.approx(0.7 / 0.9, abs=1e-6) and edge.member_drops == (0.0, 0.0)


def test_every_edge_of_three_holds_the_pair_and_no_member_set_twice() -> None:
    result = search(group_size=3, groups=24)
    assert result.edges and all({"c0", "c1"} <= set(e.members) for e in result.edges)
    assert len({e.members for e in result.edges}) == len(result.edges)
    assert [e.synergy for e in result.edges] == sorted((e.synergy for e in result.edges), reverse=True)


def test_the_call_budget_is_never_exceeded() -> None:
    model = PlantedModel()
    result = search(model, max_calls=10)
    assert result.calls == model.calls == 10 and result.stopped == "max_calls"


def test_cached_probabilities_cost_no_calls_and_give_the_same_answer() -> None:
    cache = ProbabilityCache(10_000)
    config = InteractionConfig(low_gain_streak=100)
    first = concept_interactions(CONCEPTS, PROMPT, TARGET, PlantedModel(), mask_id=MASK, config=config, cache=cache)
    model = PlantedModel()
    again = concept_interactions(CONCEPTS, PROMPT, TARGET, model, mask_id=MASK, config=config, cache=cache)
    assert model.calls == again.calls == 0 and again.cache_hits == first.calls
    assert again.edges == first.edges


def test_a_search_that_finds_nothing_stops_after_the_low_gain_streak() -> None:
    class Flat(PlantedModel):
        def next_token_probabilities(self, prompts, target):
            return np.full(len(prompts), 0.5)

    result = concept_interactions(CONCEPTS, PROMPT, TARGET, Flat(), mask_id=MASK,
                                  config=InteractionConfig(low_gain_streak=5))
    assert (result.stopped, result.rounds, result.edges) == ("low_gain", 5, ())


def test_the_search_is_deterministic_under_its_seed() -> None:
    assert search(random_seed=7) == search(random_seed=7)


def test_a_single_concept_has_no_groups() -> None:
    result = concept_interactions(CONCEPTS[:1], PROMPT, TARGET, PlantedModel(), mask_id=MASK)
    assert (result.stopped, result.edges, result.calls) == ("too_few_concepts", (), 2)


@given(st.lists(st.booleans(), min_size=1, max_size=30))
def test_masking_replaces_each_run_by_one_mask_token_and_keeps_the_rest(flags: list[bool]) -> None:
    ids = np.arange(100, 100 + len(flags))
    masked = np.array(flags)
    out = mask_positions(ids, masked, MASK)
    runs = int((masked & ~np.concatenate(([False], masked[:-1]))).sum())
    assert len(out) == len(ids) - int(masked.sum()) + runs
    assert (out == MASK).sum() == runs
    assert out[out != MASK].tolist() == ids[~masked].tolist()


def test_the_torch_shadow_gives_the_softmax_of_the_last_position() -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from attribution.shadow import TorchShadow

    torch.manual_seed(0)  # random weights: this checks arithmetic, not explanations
    lm = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50)).eval()
    shadow = TorchShadow(lm, lm.transformer.h, name="tiny")
    prompts = [np.array([1, 2, 3]), np.array([4, 5]), np.array([3, 2, 1])]
    got = shadow.next_token_probabilities(prompts, target=7)
    with torch.no_grad():
        want = [torch.softmax(lm(torch.as_tensor(p[None])).logits[0, -1], -1)[7].item() for p in prompts]
    np.testing.assert_allclose(got, want, rtol=1e-5)
