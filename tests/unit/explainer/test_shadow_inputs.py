"""Which ids the shadow pass uses for a trace: the completion's own, else the shadow tokenizer's; and when none."""
from __future__ import annotations

import numpy as np
import pytest

from attribution import LayerFeatures
from explainer.shadow import shadow_inputs, shadow_model
from explainer.trace_data import Completion
from tests.e2e.shadow_model import WIDTH, write_shadow_model

pytest.importorskip("transformers")

PROMPT, TEXT = "the cells divide by", " mitosis and the nucleus holds the genome"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_shadow_model(tmp_path_factory.mktemp("shadow") / "tiny-shadow")


@pytest.fixture
def shadow(settings, folder):
    settings.SHADOW_MODEL = str(folder)
    return shadow_model()


def captured(shadow, ids: list[int], layer: int = 1) -> list[LayerFeatures]:
    """The layer as the capture hooks would have recorded it for `ids` (the last id never fed back)."""
    acts = shadow.model.residuals(np.asarray(ids[:-1]), [layer])[layer]
    empty = np.zeros((len(acts), 1))
    return [LayerFeatures(layer, acts, empty.astype(np.int64), empty.astype(np.float32),
                          np.zeros((1, WIDTH), np.float32), np.zeros(WIDTH, np.float32))]


def test_the_completion_ids_are_used_when_they_cover_the_sequence(shadow):
    ids = shadow.tokenizer(PROMPT + TEXT)["input_ids"]
    inputs, why_not = shadow_inputs(shadow, completion=Completion(text=TEXT, token_ids=ids),
                                    layers=captured(shadow, ids))
    assert why_not is None
    np.testing.assert_array_equal(inputs.input_ids, ids[:-1])
    np.testing.assert_array_equal(inputs.targets, ids[1:])


def test_without_ids_the_prompt_and_text_are_retokenized_with_the_shadow_tokenizer(shadow):
    ids = shadow.tokenizer(PROMPT + TEXT)["input_ids"]
    inputs, why_not = shadow_inputs(shadow, completion=Completion(prompt=PROMPT, text=TEXT),
                                    layers=captured(shadow, ids))
    assert why_not is None and inputs.targets.tolist() == ids[1:]


def test_a_trace_the_shadow_did_not_produce_keeps_the_unembedding_reading_and_says_why(shadow):
    ids = shadow.tokenizer(PROMPT + TEXT)["input_ids"]
    other = list(reversed(ids))
    inputs, why_not = shadow_inputs(shadow, completion=Completion(text=TEXT, token_ids=other),
                                    layers=captured(shadow, ids))
    assert inputs is None and "not the model that produced the trace" in why_not
    inputs, why_not = shadow_inputs(shadow, completion=Completion(text="mitosis"), layers=captured(shadow, ids))
    assert inputs is None and "tokenizer does not give" in why_not


def test_a_trace_longer_than_the_shadow_context_keeps_the_unembedding_reading(shadow):
    long = [LayerFeatures(1, np.zeros((65, WIDTH), np.float32), np.zeros((65, 1), np.int64),
                          np.zeros((65, 1), np.float32), np.zeros((1, WIDTH), np.float32), np.zeros(WIDTH, np.float32))]
    inputs, why_not = shadow_inputs(shadow, completion=Completion(text=TEXT, token_ids=[1] * 66), layers=long)
    assert inputs is None and "exceed the shadow model's context of 64" in why_not
