"""Attribution through a (tiny, random-weight) GPT-2 and verification by ablation: the mechanics, not faithfulness."""
from __future__ import annotations

import numpy as np
import pytest

import hif
from attribution import (AttributionConfig, LayerFeatures, ModelInputs, TorchShadow, VerifyConfig,
                         attribute_through_model, shadow_mismatch, verify, window_spans)
from attribution.verify import ablation, spearman

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

T, D, D_SAE, K, VOCAB = 10, 32, 64, 6, 50


@pytest.fixture(scope="module")
def shadow() -> TorchShadow:
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=D, n_layer=2, n_head=2,
                                     initializer_range=0.2, bos_token_id=0, eos_token_id=0)
    lm = transformers.GPT2LMHeadModel(config).eval()
    return TorchShadow(lm, lm.transformer.h, name="tiny-gpt2")


@pytest.fixture(scope="module")
def inputs() -> ModelInputs:
    ids = np.random.default_rng(0).integers(1, VOCAB, T + 1)
    return ModelInputs(input_ids=ids[:T], targets=ids[1:])


def residual(shadow: TorchShadow, inputs: ModelInputs, layer: int) -> np.ndarray:
    """The output of block `layer`, as the capture hooks record it (HF's last hidden state has ln_f applied)."""
    return shadow.residuals(inputs.input_ids, [layer])[layer].astype(np.float32)


def features(shadow: TorchShadow, inputs: ModelInputs, layer: int, seed: int, scale: float = 0.3) -> LayerFeatures:
    """Random unit decoder rows and small activations on the model's real residual (the SAE error absorbs the rest)."""
    rng = np.random.default_rng(seed)
    w_dec = rng.standard_normal((D_SAE, D)).astype(np.float32)
    w_dec /= np.linalg.norm(w_dec, axis=1, keepdims=True)
    indices = np.stack([rng.choice(D_SAE, K, replace=False) for _ in range(T)]).astype(np.int64)
    values = rng.exponential(scale, (T, K)).astype(np.float32)
    return LayerFeatures(layer, residual(shadow, inputs, layer), indices, values, w_dec, np.zeros(D, np.float32))


def attribute(shadow, inputs, layers, granularity="token", windows=()):
    return attribute_through_model(layers, shadow=shadow, inputs=inputs, granularity=granularity,
                                   windows=list(windows), config=AttributionConfig())


def lead_features(graph: hif.Graph) -> list[tuple[int, int]]:
    inc = graph.incidences
    lead = inc.members[inc.offsets[:-1]]
    return list(zip(graph.nodes.layer[lead].tolist(), graph.nodes.feature[lead].tolist()))


def test_ablating_a_feature_whose_decoder_row_is_zero_changes_nothing(shadow, inputs):
    lf = features(shadow, inputs, 1, seed=1)
    dead = int(lf.indices[3, 0])
    lf.W_dec[dead] = 0.0
    edit = ablation(lf, np.array([dead]), (0, T), T)
    assert not edit.any()
    clean, _ = shadow.target_logits(inputs.input_ids, inputs.targets, [{}])
    ablated, _ = shadow.target_logits(inputs.input_ids, inputs.targets, [{1: edit}])
    np.testing.assert_array_equal(ablated, clean)
    result = attribute(shadow, inputs, [lf])
    assert (1, dead) not in lead_features(result.graph)  # a feature that cannot move the state is no player


def test_a_planted_feature_writing_the_target_direction_is_found_verified_and_ranked_first(shadow, inputs):
    lf = features(shadow, inputs, 1, seed=2)
    p, planted = 6, 7
    w_u = shadow.lm.lm_head.weight.detach().numpy()[inputs.targets[p]]  # the target token's unembedding
    direction = (w_u - w_u.mean()) * shadow.lm.transformer.ln_f.weight.detach().numpy()
    lf.W_dec[planted] = direction / np.linalg.norm(direction)
    lf.indices[:, 0] = np.where(lf.indices[:, 0] == planted, (planted + 1) % D_SAE, lf.indices[:, 0])
    lf.indices[p, 0], lf.values[p, 0] = planted, 3.0 * np.linalg.norm(lf.acts[p])
    result = attribute(shadow, inputs, [lf])
    checked = verify(result.graph, [lf], shadow, inputs, window_spans("token", [], T), VerifyConfig())
    inc = checked.graph.incidences
    strongest = int(np.argmax(np.abs(inc.effect)))
    assert lead_features(checked.graph)[strongest] == (1, planted) and inc.window[strongest] == p
    assert inc.effect[strongest] > 0 and inc.observed[strongest] > 0 and inc.verified[strongest]
    assert inc.observed[strongest] > 5 * np.nanmax(np.abs(np.delete(inc.observed, strongest)))
    assert checked.summary["checked"] == 16 and checked.summary["budget_exhausted"] == 0


def test_gradient_times_activation_agrees_with_ablation_for_small_activations(shadow, inputs):
    """First order is exact in the limit: with tiny activations, predicted and observed effects coincide."""
    layers = [features(shadow, inputs, layer, seed=3 + layer, scale=1e-3) for layer in (0, 1)]
    result = attribute(shadow, inputs, layers, granularity="sentence", windows=[(0, 4), (4, 10)])
    spans = window_spans("sentence", [(0, 4), (4, 10)], T)
    checked = verify(result.graph, layers, shadow, inputs, spans, VerifyConfig(top_k=12))
    inc = checked.graph.incidences
    rows = np.flatnonzero(inc.verifier == 0)
    assert len(rows) == 12
    np.testing.assert_allclose(inc.observed[rows], inc.effect[rows], rtol=0.05, atol=1e-6)
    assert checked.summary["spearman"] > 0.9


def test_verification_is_deterministic_under_the_seed(shadow, inputs):
    layers = [features(shadow, inputs, 1, seed=5)]
    result = attribute(shadow, inputs, layers)
    spans = window_spans("token", [], T)
    runs = [verify(result.graph, layers, shadow, inputs, spans, VerifyConfig(random_seed=seed))
            for seed in (4, 4, 5)]
    first, again, other = ({k: v for k, v in run.summary.items() if k != "elapsed_ms"} for run in runs)
    assert first == again
    np.testing.assert_array_equal(runs[0].graph.incidences.observed, runs[1].graph.incidences.observed)
    assert first["random8_drop"] != other["random8_drop"]  # the seed draws the random features
    assert first["top8_drop"] == other["top8_drop"]


def test_over_budget_incidences_are_marked_and_carry_no_numbers(shadow, inputs):
    layers = [features(shadow, inputs, 1, seed=6)]
    result = attribute(shadow, inputs, layers)
    checked = verify(result.graph, layers, shadow, inputs, window_spans("token", [], T),
                     VerifyConfig(budget_ms=1e-6))
    assert checked.summary["checked"] == 0 and checked.summary["budget_exhausted"] == 16
    assert checked.summary["spearman"] is None and checked.summary["drop_ratio"] is None
    doc = hif.build_hif(checked.graph, {"model_name": "m", "sae_dictionary": "d", "granularity": "token"},
                        hif.HypergraphConfig())
    marked = [i["attributes"] for i in doc["incidences"] if "verifier" in i["attributes"]]
    assert marked and all(a["verifier"] == "budget_exhausted" and "observed_effect" not in a for a in marked)


def test_verification_travels_in_the_artifact_and_the_hif_document(shadow, inputs):
    layers = [features(shadow, inputs, 1, seed=7)]
    result = attribute(shadow, inputs, layers)
    checked = verify(result.graph, layers, shadow, inputs, window_spans("token", [], T), VerifyConfig(top_k=4))
    back = hif.Graph.from_arrays(checked.graph.to_arrays())
    np.testing.assert_array_equal(back.incidences.observed, checked.graph.incidences.observed)
    assert back.incidences.verifiers == ("ablation", "budget_exhausted")
    doc = hif.build_hif(back, {"model_name": "m", "sae_dictionary": "d", "granularity": "token"},
                        hif.HypergraphConfig())
    assert hif.validate_hif(doc) == []
    checked_docs = [i for i in doc["incidences"] if i["attributes"].get("verifier") == "ablation"]
    assert len(checked_docs) == 4
    assert all(i["attributes"]["value"] == "model" and i["metadata"]["method"] == "gradient" for i in checked_docs)
    assert {"observed_effect", "observed_prob_change", "verified"} <= set(checked_docs[0]["attributes"])


def test_a_budget_too_small_for_any_backward_pass_leaves_saliency_marked_as_such(shadow, inputs):
    layers = [features(shadow, inputs, 1, seed=8)]
    result = attribute_through_model(layers, shadow=shadow, inputs=inputs, granularity="token", windows=[],
                                     config=AttributionConfig(token_budget_ms=1e-6))
    assert result.fell_back and result.method == "saliency" and "budget" in result.reason
    assert set(result.graph.incidences.methods) == {"gradient", "saliency"}


def test_spearman_ranks_with_ties():
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([10.0, 20, 30, 40])) == pytest.approx(1.0)
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([4.0, 3, 2, 1])) == pytest.approx(-1.0)
    assert spearman(np.array([1.0, 1, 2, 3]), np.array([1.0, 2, 3, 4])) == pytest.approx(0.9486833)
    assert spearman(np.array([1.0, 2]), np.array([1.0, 2])) is None
    assert spearman(np.array([1.0, 1, 1]), np.array([1.0, 2, 3])) is None


def test_verify_config_reads_and_checks_the_environment():
    config = VerifyConfig.from_env({"VERIFY_TOP_K": "4", "VERIFY_MIN_DROP": "0.2", "VERIFY_BUDGET_MS": "50",
                                    "ATTR_RANDOM_SEED": "9"})
    assert config == VerifyConfig(top_k=4, min_drop=0.2, budget_ms=50.0, random_seed=9)
    assert VerifyConfig.from_env({}) == VerifyConfig(top_k=16, min_drop=0.05, budget_ms=2000.0)
    with pytest.raises(ValueError, match="VERIFY_BUDGET_MS"):
        VerifyConfig(budget_ms=0)


def test_the_shadow_model_is_matched_to_a_trace_by_recomputing_its_residuals(shadow, inputs):
    lf = features(shadow, inputs, 1, seed=9)
    assert shadow_mismatch(shadow, inputs, [lf]) is None
    noisy = LayerFeatures(1, (lf.acts + 0.001 * np.abs(lf.acts).max()).astype(np.float16).astype(np.float32),
                          lf.indices, lf.values, lf.W_dec, lf.b_dec)
    assert shadow_mismatch(shadow, inputs, [noisy]) is None  # float16 transport is the same model
    other = LayerFeatures(1, features(shadow, ModelInputs(inputs.input_ids[::-1].copy(), inputs.targets), 1,
                                      seed=9).acts, lf.indices, lf.values, lf.W_dec, lf.b_dec)
    assert "not the model that produced the trace" in shadow_mismatch(shadow, inputs, [other])
    assert "is not a layer" in shadow_mismatch(shadow, inputs, [LayerFeatures(5, *[getattr(lf, f) for f in (
        "acts", "indices", "values", "W_dec", "b_dec")])])


def test_threads_sharing_one_shadow_model_get_what_each_would_alone(shadow, inputs):
    """A worker's threads share the loaded model; each call's hooks must see its own pass only."""
    from concurrent.futures import ThreadPoolExecutor

    layers = [features(shadow, inputs, 1, seed=10)]
    alone = attribute(shadow, inputs, layers).graph.incidences.effect
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda _: attribute(shadow, inputs, layers).graph.incidences.effect, range(8)))
    for effect in together:
        np.testing.assert_array_equal(effect, alone)
