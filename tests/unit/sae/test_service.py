"""SAEDecodeService: inline decode, micro-batching across concurrent traces, LRU eviction, overrides, errors."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from sae import DictionaryError, SAEConfig, SAEDecodeService
from sae.testing import random_weights, write_saelens_dictionary


def make_root(tmp_path, layers=(0,), d_in=16, d_sae=128):
    for layer in layers:
        w = random_weights(d_in, d_sae, seed=layer)
        write_saelens_dictionary(tmp_path / "dict" / f"layer_{layer}", w["W_enc"], w["b_enc"], w["W_dec"],
                                 w["b_dec"])
    return tmp_path


def config(tmp_path, **kw):
    return SAEConfig(dict_root=tmp_path, dict_name="dict", device="cpu", **kw)


def x(t, d_in=16, seed=0):
    return np.random.default_rng(seed).standard_normal((t, d_in)).astype(np.float32)


@pytest.mark.parametrize("enable", [True, False])
def test_decode_matches_dictionary_topk(tmp_path, enable):
    make_root(tmp_path)
    svc = SAEDecodeService(config(tmp_path, topk=5, enable_service=enable))
    acts = x(9)
    r = svc.decode(0, acts)
    idx, val = svc.dictionary(0).topk(acts, 5)
    np.testing.assert_array_equal(r.indices, idx)
    np.testing.assert_array_equal(r.values, val)
    assert r.layer == 0 and r.device == "cpu" and r.dictionary.d_sae == 128
    assert svc.decode(0, acts, topk=3).indices.shape == (9, 3)


def test_requests_from_several_traces_share_one_batch(tmp_path):
    make_root(tmp_path)
    svc = SAEDecodeService(config(tmp_path, topk=4, batch_size=6, max_wait_ms=2000))
    svc.dictionary(0)
    inputs = [x(3 + i, seed=i) for i in range(6)]
    results = [None] * 6
    barrier = threading.Barrier(6)

    def call(i):
        barrier.wait()
        results[i] = svc.decode(0, inputs[i], topk=2 + i % 3)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert svc.batches == [6], svc.batches  # one batch: the 6th arrival filled it before the wait ran out
    d = svc.dictionary(0)
    for i, r in enumerate(results):
        idx, val = d.topk(inputs[i], 2 + i % 3)
        np.testing.assert_array_equal(r.indices, idx)
        np.testing.assert_allclose(r.values, val, rtol=1e-6)


def test_lru_evicts_least_recently_used_layer(tmp_path):
    make_root(tmp_path, layers=(0, 1, 2))
    loads = []

    from sae import load_dictionary

    def loader(folder):
        loads.append(folder.name)
        return load_dictionary(folder)

    svc = SAEDecodeService(config(tmp_path, cache_layers=2), loader=loader)
    svc.decode(0, x(2))
    svc.decode(1, x(2))
    svc.decode(0, x(2))  # 0 becomes most recent
    svc.decode(2, x(2))  # evicts 1
    assert svc.cached_layers() == [0, 2]
    svc.decode(1, x(2))  # reloaded
    assert loads == ["layer_0", "layer_1", "layer_2", "layer_1"]


def test_bad_requests_fail_alone(tmp_path):
    make_root(tmp_path)
    svc = SAEDecodeService(config(tmp_path))
    with pytest.raises(DictionaryError, match="layer_5"):
        svc.decode(5, x(2))
    with pytest.raises(DictionaryError, match="d_in=16"):
        svc.decode(0, x(2, d_in=17))
    assert svc.decode(0, x(2)).indices.shape == (2, 64)


def test_config_from_env():
    cfg = SAEConfig.from_env({"DICT_ROOT": "/d", "DICT_NAME": "m", "SAE_TOPK": "32", "SAE_DEVICE": "CPU",
                              "SAE_CACHE_LAYERS": "3", "ENABLE_SAE_SERVICE": "0", "SAE_MAX_WAIT_MS": "1.5"})
    assert (str(cfg.dict_root), cfg.dict_name, cfg.topk, cfg.device, cfg.cache_layers) == ("/d", "m", 32, "cpu", 3)
    assert cfg.enable_service is False and cfg.max_wait_ms == 1.5
    assert str(cfg.layer_folder(4)) == "/d/m/layer_4"
    defaults = SAEConfig.from_env({})
    assert (str(defaults.dict_root), defaults.dict_name, defaults.topk, defaults.tile_rows) == ("var/dicts", "sample",
                                                                                                64, 256)
    with pytest.raises(ValueError):
        SAEConfig.from_env({"SAE_DEVICE": "tpu"})
    given = SAEConfig.from_env({"DICT_ROOT": "/ignored", "SAE_TOPK": "8"}, dict_root="/given", dict_name="n")
    assert (str(given.dict_root), given.dict_name, given.topk) == ("/given", "n", 8)
