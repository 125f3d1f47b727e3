"""The envelope contract, windowing, drops and the hot-path hook."""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import threading

import numpy as np
import pytest

from ingest.hooks import CaptureConfig, CapturePipeline, InMemoryStore, read_shards, register_layer_hook

ROOT = pathlib.Path(__file__).resolve().parents[3]
ENVELOPE_KEYS = {"trace_id", "model_name", "model_hash", "layers", "tokens", "shards", "dropped", "compress",
                 "summary", "d_model", "hook_point", "convention"}


def _rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def test_envelope_contract() -> None:
    cfg = CaptureConfig("gpt2-rand", "hash-1", window_size=4, compress="f16-zstd", namespace="ns")
    pipeline = CapturePipeline(cfg)
    pipeline.start_trace("trace-1", params={"max_new_tokens": 10})
    x = _rows(10, 8)
    for layer in (2, 0):
        for i in range(10):
            pipeline.capture_token("trace-1", i, x[i], layer=layer)
    envelope = pipeline.flush("trace-1")
    assert set(envelope) == ENVELOPE_KEYS
    assert envelope == {
        "trace_id": "trace-1", "model_name": "gpt2-rand", "model_hash": "hash-1", "layers": [0, 2], "tokens": 10,
        "shards": [f"ns:trace-1:{layer}:{w}" for layer in (0, 2) for w in range(3)], "dropped": 0,
        "compress": "f16-zstd", "summary": "dense", "d_model": 8, "hook_point": "resid_post", "convention": "hf_raw"}
    json.dumps(envelope)
    assert set(pipeline.store.data) == set(envelope["shards"])


def test_envelope_is_accepted_by_the_ingest_schema() -> None:
    """The lead's `POST /ingest` schema is the contract; validate a real envelope as an `activations` event."""
    jsonschema = pytest.importorskip("jsonschema")
    path = ROOT / "ingest" / "schemas" / "event.schema.json"
    if not path.exists():
        pytest.skip("ingest event schema not present yet")
    pipeline = CapturePipeline(CaptureConfig("m", "h", window_size=2))
    pipeline.capture_token("t.1", 0, [1.0, 2.0], layer=1)
    event = {"trace_id": "t.1", "event_type": "activations", "payload": pipeline.flush("t.1")}
    jsonschema.validate(event, json.loads(path.read_text()))


def test_windows_layer_filter_and_readback() -> None:
    cfg = CaptureConfig("m", "h", window_size=5, layers=[1, 3], summary="topk", topk=3, compress="f16-lz4")
    pipeline = CapturePipeline(cfg)
    x = _rows(12, 10, seed=4)
    hook = register_layer_hook(pipeline, "t")
    for i in range(12):
        for layer in (0, 1, 3):
            hook(i, x[i], layer)
    envelope = pipeline.flush("t")
    assert envelope["layers"] == [1, 3] and envelope["tokens"] == 12 and envelope["summary"] == "topk"
    assert envelope["shards"] == [f"activations:t:{layer}:{w}" for layer in (1, 3) for w in range(3)]
    assert envelope["d_model"] == 10
    out = read_shards(pipeline.store, envelope["shards"])
    tokens, rows = out[1]
    assert tokens.tolist() == list(range(12))
    expected = np.zeros_like(x)
    top = np.argsort(-np.abs(x), axis=1)[:, :3]
    np.put_along_axis(expected, top, np.take_along_axis(x, top, axis=1), axis=1)
    np.testing.assert_allclose(rows, expected, rtol=1e-3)
    np.testing.assert_allclose(out[3][1], expected, rtol=1e-3)


def test_default_layer_is_the_first_configured_one() -> None:
    pipeline = CapturePipeline(CaptureConfig("m", "h", layers=[4, 7]))
    pipeline.capture_token("t", 0, [1.0, 2.0])
    assert pipeline.flush("t")["layers"] == [4]


def test_capture_block_splits_across_windows_like_tokens() -> None:
    x = _rows(23, 6, seed=5)
    by_token = CapturePipeline(CaptureConfig("m", "h", window_size=4, compress="json"))
    by_block = CapturePipeline(CaptureConfig("m", "h", window_size=4, compress="json"))
    for i in range(23):
        by_token.capture_token("t", i, x[i], layer=0)
    by_block.capture_block("t", 0, x[:9], layer=0)
    by_block.capture_block("t", 9, x[9:10], layer=0)
    by_block.capture_block("t", 10, x[10:], layer=0)
    a, b = by_token.flush("t"), by_block.flush("t")
    assert a == b
    assert by_token.store.data == by_block.store.data


def test_width_change_within_a_trace_is_an_error() -> None:
    pipeline = CapturePipeline(CaptureConfig("m", "h"))
    pipeline.capture_token("t", 0, [1.0, 2.0])
    with pytest.raises(ValueError, match="width"):
        pipeline.capture_token("t", 1, [1.0, 2.0, 3.0])


def test_flush_of_unknown_trace_raises_keyerror() -> None:
    with pytest.raises(KeyError):
        CapturePipeline(CaptureConfig("m", "h")).flush("nope")


class _BlockedStore(InMemoryStore):
    """A store whose writer is stuck until released: models a Redis that stopped answering."""

    def __init__(self, queue_max: int) -> None:
        super().__init__(queue_max=queue_max, batch_max=1)
        self.release = threading.Event()

    def _write(self, items: list[tuple[str, bytes]]) -> None:
        self.release.wait(10)
        super()._write(items)


def test_full_queue_drops_and_counts_without_blocking(caplog: pytest.LogCaptureFixture) -> None:
    store = _BlockedStore(queue_max=2)
    pipeline = CapturePipeline(CaptureConfig("m", "h", window_size=2, flush_timeout_s=0.3), store=store)
    x = _rows(40, 4)
    for i in range(40):
        pipeline.capture_token("t", i, x[i])
    envelope = pipeline.flush("t")
    store.release.set()
    assert envelope["tokens"] == 40
    assert envelope["dropped"] == 40 - 2 * len(envelope["shards"])
    assert envelope["dropped"] >= 40 - 2 * 3, "at most 1 in the writer + 2 queued could be written"
    assert sum("dropping activations" in r.message for r in caplog.records) == 1, "logged once per trace"
    store.close()


def test_traces_are_independent() -> None:
    pipeline = CapturePipeline(CaptureConfig("m", "h", window_size=3))
    x = _rows(6, 4)
    for i in range(6):
        pipeline.capture_token("a", i, x[i])
        pipeline.capture_token("b", i + 100, -x[i])
    a, b = pipeline.flush("a"), pipeline.flush("b")
    ta, ra = read_shards(pipeline.store, a["shards"])[0]
    tb, rb = read_shards(pipeline.store, b["shards"])[0]
    assert ta.tolist() == list(range(6)) and tb.tolist() == list(range(100, 106))
    np.testing.assert_array_equal(ra, -rb)


def test_hooks_import_and_capture_without_numpy_torch_or_django() -> None:
    code = (
        "import sys\n"
        "for name in ('numpy', 'torch', 'django'): sys.modules[name] = None\n"
        "from ingest.hooks import CaptureConfig, CapturePipeline, register_layer_hook, attach, detach\n"
        "p = CapturePipeline(CaptureConfig('m', 'h', window_size=2, summary='topk', topk=2))\n"
        "hook = register_layer_hook(p, 't')\n"
        "for i in range(5): hook(i, [float(i), -3.0, 0.5])\n"
        "hook(5, b'[1.0, 2.0, 3.0]')\n"
        "env = p.flush('t')\n"
        "assert env['tokens'] == 6 and env['dropped'] == 0 and len(env['shards']) == 3, env\n"
        "import json; shard = json.loads(p.store.data[env['shards'][0]])\n"
        "assert shard['indices'] == [[1, 2], [1, 0]] and shard['values'] == [[-3.0, 0.5], [-3.0, 1.0]], shard\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
