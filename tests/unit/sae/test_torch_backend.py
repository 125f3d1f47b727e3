"""torch path (torch CPU stands in for CUDA): low-precision candidates + fp32 rescoring match the fp32 reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sae import DictionaryError, SAEConfig, SAEDecodeService, load_dictionary
from sae.testing import random_weights, write_saelens_dictionary
from tests.unit.sae.helpers import assert_same_topk

torch = pytest.importorskip("torch")
from sae.torch_backend import (NumpyBackend, TorchBackend, TorchTopK, group_size, select_backend,  # noqa: E402
                               top_candidates)

D_IN, D_SAE = 64, 2048


@pytest.fixture
def dictionary(tmp_path):
    w = random_weights(D_IN, D_SAE, seed=4)
    thr = np.abs(np.random.default_rng(0).normal(0.2, 0.1, D_SAE))
    write_saelens_dictionary(tmp_path, w["W_enc"], w["b_enc"], w["W_dec"], w["b_dec"], {"architecture": "jumprelu"},
                             extra_tensors={"threshold": thr})
    return load_dictionary(tmp_path)


def architecture_folder(folder, architecture, normalize):
    """A small dictionary of each architecture (and normalisation) the torch path must reproduce."""
    w = random_weights(D_IN, 520, seed=11)
    rng = np.random.default_rng(2)
    cfg = {"architecture": architecture, "normalize_activations": normalize}
    extra, b_enc = {}, w["b_enc"]
    if architecture == "topk":
        cfg["k"] = 12
    elif architecture == "jumprelu":
        extra = {"threshold": np.abs(rng.normal(0.2, 0.1, 520))}
    elif architecture == "gated":
        extra = {"b_gate": rng.normal(-0.2, 0.3, 520), "r_mag": rng.normal(0, 0.3, 520), "b_mag": rng.normal(0, .1, 520)}
        b_enc = None
    elif architecture == "standard":
        cfg["apply_b_dec_to_input"] = normalize == "none"  # both settings of the b_dec subtraction
    return load_dictionary(write_saelens_dictionary(folder, w["W_enc"], b_enc, w["W_dec"], w["b_dec"], cfg, extra))


@pytest.mark.parametrize("architecture", ["standard", "topk", "jumprelu", "gated"])
@pytest.mark.parametrize("normalize", ["none", "layer_norm"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_same_as_numpy_path_for_every_architecture(tmp_path, architecture, normalize, dtype):
    """Several row blocks and rescoring chunks, input prepared in torch: same features and values as the numpy path."""
    d = architecture_folder(tmp_path, architecture, normalize)
    x = (np.random.default_rng(5).standard_normal((83, D_IN)) * 2).astype(np.float32)
    fast = TorchTopK(d, "cpu", dtype=getattr(torch, dtype), block_elems=520 * 16)
    assert fast.block_rows() == 16
    for k in (1, 20, 600):  # 600 > d_sae: padded with zeros as on the numpy path
        idx, val = fast.topk(x, k)
        ref_idx, ref_val = d.topk(x, k)
        assert idx.shape == val.shape == (83, k) and idx.dtype == np.int64 and val.dtype == np.float32
        if k <= d.d_sae:
            assert_same_topk(idx, val, d.encode(x), k)
        same = np.mean([set(idx[r][val[r] > 0]) == set(ref_idx[r][ref_val[r] > 0]) for r in range(83)])
        assert same == 1.0
        np.testing.assert_allclose(val, ref_val, atol=2e-5, rtol=1e-5)


def test_device_tensor_entry_point_equals_host_entry_point(dictionary):
    x = np.random.default_rng(1).standard_normal((50, D_IN)).astype(np.float32)
    fast = TorchTopK(dictionary, "cpu", dtype=torch.bfloat16, block_elems=D_SAE * 8)
    idx, val = fast.topk(x, 16)
    for xt in (torch.from_numpy(x), torch.from_numpy(x).to(torch.float64)):
        t_idx, t_val = fast.topk_tensor(xt, 16)
        assert t_idx.dtype == torch.int64 and t_val.dtype == torch.float32
        np.testing.assert_array_equal(t_idx.numpy(), idx)
        np.testing.assert_array_equal(t_val.numpy(), val)
    one_idx, one_val = fast.topk_tensor(torch.from_numpy(x[3]), 16)  # a single [d_in] row
    np.testing.assert_array_equal(one_idx.numpy(), idx[3:4])
    read_only = x.astype(np.float64)
    read_only.flags.writeable = False
    np.testing.assert_array_equal(fast.topk(read_only, 16)[0], idx)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_or_misshapen_input_is_a_dictionary_error(dictionary, bad):
    fast = TorchTopK(dictionary, "cpu", dtype=torch.bfloat16, block_elems=D_SAE * 4)
    x = np.zeros((9, D_IN), np.float32)
    x[7, 3] = bad  # in the last row block: the check covers every block
    with pytest.raises(DictionaryError, match="NaN or Inf"):
        fast.topk(x, 4)
    with pytest.raises(DictionaryError, match="NaN or Inf"):
        fast.topk_tensor(torch.from_numpy(x), 4)
    with pytest.raises(DictionaryError, match="d_in=64"):
        fast.topk(np.zeros((2, D_IN + 1), np.float32), 4)


def test_empty_input(dictionary):
    idx, val = TorchTopK(dictionary, "cpu", dtype=torch.bfloat16).topk(np.zeros((0, D_IN), np.float32), 4)
    assert idx.shape == val.shape == (0, 4)


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 5), n=st.integers(1, 700), m=st.integers(1, 40), group=st.sampled_from([1, 2, 4, 8, 32]),
       levels=st.sampled_from([3, 50, 10**6]), seed=st.integers(0, 2**31 - 1), bf16=st.booleans())
def test_top_candidates_keeps_the_top_m_values(rows, n, m, group, levels, seed, bf16):
    """Grouped selection returns m distinct columns whose values are the m largest (ties: any of the tied columns)."""
    m = min(m, n)
    s = torch.from_numpy(np.random.default_rng(seed).integers(0, levels, (rows, n)).astype(np.float32))
    s = s.to(torch.bfloat16) if bf16 else s
    idx = top_candidates(s, m, group)
    assert idx.shape == (rows, m) and idx.dtype == torch.int64
    for r in range(rows):
        assert len(set(idx[r].tolist())) == m
        got = np.sort(s[r, idx[r]].float().numpy())
        np.testing.assert_array_equal(got, np.sort(s[r].float().numpy())[n - m:])


def test_group_size_balances_maxima_and_members():
    assert group_size(131072, 96) == 32 and group_size(100, 96) == 1 and group_size(10, 96) == 1


def tie_dictionary(folder, n_tied):
    """Feature j < n_tied scores 1 + j * 2^-12 on the input e_0: distinct in fp32, equal or nearly in bf16 (whose
    spacing at 1.0 is 2^-7), so the bf16 candidates rank them arbitrarily; the other features score at most 0.9."""
    rng = np.random.default_rng(3)
    d_sae = 600
    W_enc = rng.uniform(-0.9, 0.9, (16, d_sae)).astype(np.float32)
    W_enc[0, :n_tied] = 1 + np.arange(n_tied) * 2.0**-12
    W_enc[0, n_tied:] = rng.uniform(0, 0.9, d_sae - n_tied)
    W_enc[1:, :] *= 1e-3
    return load_dictionary(write_saelens_dictionary(folder, W_enc, np.zeros(d_sae, np.float32),
                                                    np.ones((d_sae, 16), np.float32), np.zeros(16, np.float32)))


def test_near_ties_within_the_margin_come_out_exact(tmp_path):
    d = tie_dictionary(tmp_path, 40)
    x = np.zeros((3, 16), np.float32)
    x[:, 0] = [1.0, 2.0, 0.5]
    fast = TorchTopK(d, "cpu", dtype=torch.bfloat16, margin=32)  # k + margin = 40 >= the 40 near-tied features
    idx, val = fast.topk(x, 8)
    ref_idx, ref_val = d.topk(x, 8)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(idx[0], np.arange(39, 31, -1))
    np.testing.assert_allclose(val, ref_val, rtol=1e-6)


def test_near_ties_beyond_the_margin_stay_exact_scores_of_near_top_features(tmp_path):
    """The documented limit: with more near-ties than k + margin the set may differ from the reference, but every
    value is still the feature's exact fp32 score, rows are sorted, and each feature is within bf16 resolution of the
    reference k-th score."""
    d = tie_dictionary(tmp_path, 200)
    x = np.zeros((2, 16), np.float32)
    x[:, 0] = 1.0
    idx, val = TorchTopK(d, "cpu", dtype=torch.bfloat16, margin=2).topk(x, 8)
    dense = d.encode(x)
    kth = np.sort(dense, 1)[:, -8]
    for r in range(2):
        np.testing.assert_allclose(val[r], dense[r, idx[r]], rtol=1e-6)
        assert np.all(np.diff(val[r]) <= 0) and len(set(idx[r].tolist())) == 8
        assert np.all(val[r] >= kth[r] - 2.0**-7 * 2)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_matches_fp32_reference(dictionary, dtype):
    x = np.random.default_rng(1).standard_normal((300, D_IN)).astype(np.float32)
    fast = TorchTopK(dictionary, "cpu", dtype=getattr(torch, dtype), block_elems=D_SAE * 70)
    idx, val = fast.topk(x, 32)
    ref_idx, ref_val = dictionary.topk(x, 32)
    same = [set(idx[r][val[r] > 0]) == set(ref_idx[r][ref_val[r] > 0]) for r in range(300)]
    assert np.mean(same) == 1.0
    # values are rescored in fp32, so wherever the sets agree the values agree to fp32 precision
    np.testing.assert_allclose(np.sort(val, 1), np.sort(ref_val, 1), atol=1e-4)
    assert_same_topk(idx, val, dictionary.encode(x), 32)


def test_service_cuda_request_without_gpu_falls_back_and_counts(tmp_path, dictionary):
    from prometheus_client import REGISTRY

    before = REGISTRY.get_sample_value("sae_decode_fallbacks_total", {"device": "cuda"}) or 0.0
    backend = select_backend("cuda")
    if torch.cuda.is_available():
        assert isinstance(backend, TorchBackend)
        return
    assert isinstance(backend, NumpyBackend)
    svc = SAEDecodeService(SAEConfig(dict_root=tmp_path.parent, dict_name=tmp_path.name, device="cuda"))
    svc.dictionary = lambda layer: dictionary  # the fixture folder is the layer
    r = svc.decode(0, np.zeros((2, 64), np.float32), topk=4)
    assert r.device == "cpu"
    assert REGISTRY.get_sample_value("sae_decode_fallbacks_total", {"device": "cuda"}) == before + 1


def test_torch_backend_runtime_failure_uses_numpy(dictionary, monkeypatch):
    backend = TorchBackend("cpu")
    monkeypatch.setattr(TorchTopK, "topk", lambda self, x, k: (_ for _ in ()).throw(RuntimeError("CUDA OOM")))
    x = np.random.default_rng(2).standard_normal((4, 64)).astype(np.float32)
    idx, val, device = backend.topk(dictionary, x, 8, 256)
    assert device == "cpu"
    np.testing.assert_array_equal(idx, dictionary.topk(x, 8)[0])
