"""A trace's recorded degradation changes the work its stages do: fewer layers loaded, fewer SAE features decoded."""
from __future__ import annotations

import uuid

import numpy as np
import pytest

import sae
from explainer import pipeline, selectors
from explainer.artifacts import FolderArtifactStore
from explainer.models import Trace, TraceEvent
from hypergraph_site.demo.samples import D_IN, LAYER, write_dictionary

pytestmark = pytest.mark.django_db

T = 4


def make_trace(tenant, *, degraded: list[str] | None, level: str, layers=(2, 4, 8), width: int = 3) -> Trace:
    trace = Trace.objects.create(tenant=tenant, trace_id=f"t-{uuid.uuid4().hex[:8]}", run_id=uuid.uuid4(),
                                 degraded=degraded, backpressure_level=level)
    TraceEvent.objects.create(trace=trace, event_type="completion", event_hash="c",
                              payload={"model": "m", "text": "a b c d", "tokens": list("abcd")})
    for layer in layers:
        TraceEvent.objects.create(trace=trace, event_type="activations", event_hash=f"a{layer}", payload={
            "layer": layer, "encoding": "json", "shape": [T, width], "data": np.full((T, width), layer).tolist()})
    return trace


@pytest.mark.parametrize("degraded, level, kept", [
    (None, "", ["layer_2", "layer_4", "layer_8"]),
    (["reduce-samples"], "hard", ["layer_2", "layer_4", "layer_8"]),
    (["reduce-layers"], "soft", ["layer_4", "layer_8"]),
    (["reduce-layers"], "hard", ["layer_8"]),
])
def test_reduce_layers_keeps_the_deepest_layers_at_load(make_tenant, tmp_path, degraded, level, kept):
    tenant, _ = make_tenant("alice")
    trace = make_trace(tenant, degraded=degraded, level=level)
    store = FolderArtifactStore(tmp_path)
    pipeline.load_stage(trace, store)
    assert sorted(store.load_arrays(trace.pk, "acts")) == kept
    assert store.load_json(trace.pk, "trace")["layers"] == [int(k.removeprefix("layer_")) for k in kept]


@pytest.mark.parametrize("degraded, level, features", [
    (None, "", 256), (["reduce-topk"], "soft", 128), (["reduce-topk"], "hard", 64),
])
def test_reduce_topk_decodes_fewer_features_per_token(make_tenant, tmp_path, settings, monkeypatch, degraded,
                                                      level, features):
    settings.DICT_ROOT, settings.DICT_NAME = str(tmp_path / "dicts"), "sample"
    write_dictionary(tmp_path / "dicts")
    monkeypatch.setattr(selectors, "_catalog", None)
    tenant, _ = make_tenant("alice")
    trace = make_trace(tenant, degraded=degraded, level=level, layers=(LAYER,), width=D_IN)
    store = FolderArtifactStore(tmp_path / "artifacts")
    rows = np.random.default_rng(0).standard_normal((T, D_IN)).astype(np.float32)
    store.save_arrays(trace.pk, "acts", {f"layer_{LAYER}": rows})
    store.save_json(trace.pk, "trace", {"convention": None})
    service = sae.SAEDecodeService(sae.SAEConfig(dict_root=tmp_path / "dicts", dict_name="sample", topk=256,
                                                 enable_service=False))
    pipeline.sae_decode_stage(trace, store, service)
    assert store.load_arrays(trace.pk, "features")[f"idx_{LAYER}"].shape == (T, features)
