"""torch path (torch CPU stands in for CUDA): low-precision candidates + fp32 rescoring match the fp32 reference."""

from __future__ import annotations

import numpy as np
import pytest

from sae import SAEConfig, SAEDecodeService, load_dictionary
from sae.testing import random_weights, write_saelens_dictionary
from tests.unit.sae.helpers import assert_same_topk

torch = pytest.importorskip("torch")
from sae.torch_backend import NumpyBackend, TorchBackend, TorchTopK, select_backend  # noqa: E402


@pytest.fixture
def dictionary(tmp_path):
    w = random_weights(64, 2048, seed=4)
    thr = np.abs(np.random.default_rng(0).normal(0.2, 0.1, 2048))
    write_saelens_dictionary(tmp_path, w["W_enc"], w["b_enc"], w["W_dec"], w["b_dec"], {"architecture": "jumprelu"},
                             extra_tensors={"threshold": thr})
    return load_dictionary(tmp_path)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_matches_fp32_reference_on_at_least_99_percent_of_rows(dictionary, dtype):
    x = np.random.default_rng(1).standard_normal((300, 64)).astype(np.float32)
    fast = TorchTopK(dictionary, "cpu", dtype=getattr(torch, dtype), chunk_cols=700)
    idx, val = fast.topk(x, 32)
    ref_idx, ref_val = dictionary.topk(x, 32)
    same = [set(idx[r][val[r] > 0]) == set(ref_idx[r][ref_val[r] > 0]) for r in range(300)]
    assert np.mean(same) >= 0.99
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
