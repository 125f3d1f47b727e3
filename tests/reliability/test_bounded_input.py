"""Bounded input: oversized or mismatched activations are a 400 with a path at accept time; whatever slips through
fails only its own trace, with a readable reason, and the worker neither dies nor wedges.

The sample dictionary has one layer (6) of width 384; the service runs with the default bounds (MAX_TRACE_TOKENS
8192, MAX_LAYERS 8, MAX_ACTIVATION_WIDTH 16384).
"""
from __future__ import annotations

import base64

import numpy as np
import pytest

from hypergraph_site.demo.samples import D_IN, LAYER

from .traffic import small_trace_events
from .world import DICTIONARY_LAYERS

MAX_TRACE_TOKENS = 8192
MAX_LAYERS = 8
MAX_ACTIVATION_WIDTH = 16384


def _inline(rows: int, width: int = D_IN, layer: int = LAYER, offset: int = 0) -> dict:
    data = np.random.default_rng(rows * 7 + width).standard_normal((rows, width)).astype("<f2")
    return {"layer": layer, "token_offset": offset, "encoding": "f16-base64", "shape": [rows, width],
            "data": base64.b64encode(data.tobytes()).decode()}


def _open_trace(http, trace_id: str) -> int:
    """Post a small trace's completion; returns its number of tokens."""
    completion = small_trace_events(trace_id)[0]
    status, body = http.json("POST", "/ingest", completion)
    assert status == 202, body
    return len(completion["payload"]["tokens"])


def _leaks_server_paths(message: str, world) -> bool:
    return any(marker in message for marker in (str(world.dict_root), str(world.stack.workdir), "/tmp/", "/work/",
                                                 "site-packages", ".py\"", "Traceback"))


# (case, payload given the completion's token count, a field the error's path must name)
CASES = [
    # The poison request, verbatim in its sizes.
    ("poison_offset", lambda t: {**_inline(t), "token_offset": 1_000_000_000_000}, "token_offset"),
    ("layer_not_in_dictionary", lambda t: _inline(t, layer=max(DICTIONARY_LAYERS) + 1), "layer"),
    ("width_not_the_dictionarys", lambda t: _inline(t, width=256), "shape"),
    ("width_over_max", lambda t: _inline(1, width=MAX_ACTIVATION_WIDTH + 1), "shape"),
    ("rows_beyond_completion", lambda t: _inline(t + 4), "shape"),
    ("offset_plus_rows_beyond_completion", lambda t: _inline(2, offset=t - 1), ("token_offset", "shape")),
    ("offset_at_max_trace_tokens", lambda t: _inline(1, offset=MAX_TRACE_TOKENS), "token_offset"),
]


@pytest.mark.parametrize("case,payload,field", CASES, ids=[c[0] for c in CASES])
def test_unbounded_or_mismatched_activations_are_a_400_with_a_path(world, case, payload, field):
    http = world.http
    trace_id = f"bounded-{case.replace('_', '-')}"
    tokens = _open_trace(http, trace_id)
    event = {"trace_id": trace_id, "event_type": "activations", "payload": payload(tokens)}
    status, body = http.json("POST", "/ingest", event)
    assert status == 400, (status, body)
    fields = field if isinstance(field, tuple) else (field,)
    paths = [error["path"] for error in body["errors"]]
    assert any(f in path for path in paths for f in fields), body
    assert all(path.startswith("payload") for path in paths), body
    assert not any(_leaks_server_paths(error["message"], world) for error in body["errors"]), body
    assert world.ledger().event_types(trace_id) == ["completion"], "a rejected event was stored"


def test_more_layers_than_max_layers_is_a_400_with_a_path(world):
    """The suite's dictionary has layers 0..8, so only the MAX_LAYERS bound can refuse the ninth."""
    assert len(DICTIONARY_LAYERS) > MAX_LAYERS
    http = world.http
    tokens = _open_trace(http, "bounded-max-layers")
    answers = [http.json("POST", "/ingest", {"trace_id": "bounded-max-layers", "event_type": "activations",
                                             "payload": _inline(tokens, layer=layer)})
               for layer in DICTIONARY_LAYERS[:MAX_LAYERS + 1]]
    assert [status for status, _ in answers[:MAX_LAYERS]] == [202] * MAX_LAYERS, answers[:MAX_LAYERS]
    status, body = answers[MAX_LAYERS]
    assert status == 400, (status, body)
    assert any("layer" in error["path"] for error in body["errors"]), body
    assert "MAX_LAYERS" in body["errors"][0]["message"] or "layers" in body["errors"][0]["message"], body


def _shard_envelope(world, trace_id: str, token_index: int) -> dict:
    """A capture envelope whose one (JSON) shard, written to the suite's Redis, puts a row at `token_index`:
    nothing in the request itself says so, so an accept-time check of the body cannot see it."""
    import redis

    from ingest.hooks.codec import Shard, encode_shard

    key = f"hgcap:{trace_id}:{LAYER}:0"
    row = np.random.default_rng(3).standard_normal((1, D_IN)).astype(np.float32)
    shard = Shard(layer=LAYER, window=0, token_indices=np.array([token_index]), d_model=D_IN, summary="dense",
                  values=row, indices=None, codec="json", meta={"trace_id": trace_id, "convention": "hf_raw"})
    redis.Redis.from_url(world.redis.url).set(key, encode_shard(shard), ex=600)
    return {"trace_id": trace_id, "model_name": "sample-model", "model_hash": "sha256:sample", "layers": [LAYER],
            "tokens": 1, "shards": [key], "dropped": 0, "compress": "json", "summary": "dense", "d_model": D_IN,
            "hook_point": f"blocks.{LAYER}.hook_resid_post", "convention": "hf_raw"}


def test_what_slips_through_fails_its_trace_readably_and_the_worker_lives(world):
    from tests.local_servers import pid_alive, process_children

    worker, _ = world.start_worker()
    children = process_children(worker.pid)
    http = world.http
    ledger = world.ledger()

    trace_id = "slip-huge-shard-index"
    _open_trace(http, trace_id)
    status, body = http.json("POST", "/ingest", {"trace_id": trace_id, "event_type": "activations",
                                                  "payload": _shard_envelope(world, trace_id, 10 ** 12)})
    if status == 400:  # refused at accept after all (the service read the shard): as good, nothing to run
        assert any(error["path"].startswith("payload") for error in body["errors"]), body
    else:
        assert status == 202, body
        assert http.json("POST", "/ingest", small_trace_events(trace_id)[2])[0] == 202
        failed = ledger.wait_terminal([trace_id], timeout_s=60).rows[trace_id]
        assert failed.status == "failed", failed
        assert failed.error and len(failed.error) < 2000, failed
        assert not _leaks_server_paths(failed.error, world), failed.error
        print(f"\n[slip-through] {trace_id} failed at {failed.stage}: {failed.error}")
        status, summary = http.json("GET", f"/v1/traces/{trace_id}")
        assert status == 200 and summary["status"] == "failed" and summary["error"], summary

    # The same worker processes go on explaining.
    good = "slip-then-good"
    for event in small_trace_events(good, 1):
        assert http.json("POST", "/ingest", event)[0] == 202
    done = ledger.wait_terminal([good], timeout_s=60)
    assert done.rows[good].status == "complete", done.describe() + "\n" + world.worker_logs()
    assert worker.poll() is None and pid_alive(worker.pid), "the worker parent died"
    assert process_children(worker.pid) == children, "a worker child died and was replaced"
