"""The attribute stage keeps a trace when attribution through the shadow model fails: the other reading stands in."""
from __future__ import annotations

import uuid
from types import SimpleNamespace

import numpy as np
import pytest

from attribution import ModelInputs
from explainer import pipeline
from explainer.artifacts import FolderArtifactStore
from explainer.models import Trace

pytestmark = pytest.mark.django_db

T, D = 4, 8


def test_a_failing_shadow_pass_leaves_the_unembedding_reading_and_says_why(make_tenant, tmp_path, monkeypatch):
    tenant, _ = make_tenant("alice")
    trace = Trace.objects.create(tenant=tenant, trace_id="t-shadow", granularity="token", run_id=uuid.uuid4())
    store = FolderArtifactStore(tmp_path)
    rng = np.random.default_rng(0)
    store.save_arrays(trace.pk, "acts", {"layer_1": rng.standard_normal((T, D)).astype(np.float32)})
    store.save_arrays(trace.pk, "features", {"idx_1": np.tile(np.arange(3), (T, 1)),
                                             "val_1": np.ones((T, 3), np.float32)})
    store.save_json(trace.pk, "trace", {"tokens": list("abcd"), "token_ids": None, "windows": [[0, T]],
                                        "layers": [1], "convention": None})
    dictionary = SimpleNamespace(W_dec=rng.standard_normal((3, D)).astype(np.float32),
                                 b_dec=np.zeros(D, np.float32), folder=str(tmp_path / "no-dictionary-files"))
    service = SimpleNamespace(dictionary=lambda layer: dictionary)

    def fails(*args, **kwargs):
        raise MemoryError("CUDA out of memory")

    monkeypatch.setattr(pipeline, "_model_inputs", lambda trace, layers: (
        ModelInputs(np.zeros(T, np.int64), np.zeros(T, np.int64)), ""))
    monkeypatch.setattr(pipeline, "_through_model", fails)
    pipeline.attribute_stage(trace, store, service)

    trace.refresh_from_db()
    assert trace.verification == {"value": "cosine", "shadow_model": None, "shadow_skipped":
                                  "attribution through the shadow model failed: MemoryError: CUDA out of memory"}
    assert "incidences.weight" in store.load_arrays(trace.pk, "attribution")
