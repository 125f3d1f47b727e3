"""Real Redis: key layout, TTL, read-back, missing shards, and an outage that never reaches the caller."""
from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from ingest.hooks import CaptureConfig, CapturePipeline, RedisStore, ShardsMissing, read_shards
from tests.local_servers import private_redis


def _x(n: int = 40, d: int = 16) -> np.ndarray:
    return np.random.default_rng(11).standard_normal((n, d)).astype(np.float32)


@pytest.mark.parametrize("compress", ["json", "f16-zstd"])
def test_redis_shards_have_ttl_and_read_back(redis_client, namespace: str, compress: str) -> None:
    cfg = CaptureConfig("m", "h", namespace=namespace, window_size=16, compress=compress, ttl_s=120)
    store = RedisStore.from_config(cfg)
    pipeline = CapturePipeline(cfg, store=store)
    x = _x()
    for i in range(40):
        pipeline.capture_token("tr", i, x[i], layer=5)
    envelope = pipeline.flush("tr")
    store.close()
    assert envelope["shards"] == [f"{namespace}:tr:5:{w}" for w in range(3)] and envelope["dropped"] == 0
    for key in envelope["shards"]:
        assert 0 < redis_client.ttl(key) <= 120
    tokens, rows = read_shards(redis_client, envelope["shards"])[5]
    assert tokens.tolist() == list(range(40))
    tol = 0 if compress == "json" else 1e-3
    np.testing.assert_allclose(rows, x, rtol=tol, atol=tol)


def test_missing_shards_raise_with_the_keys(redis_client, namespace: str) -> None:
    cfg = CaptureConfig("m", "h", namespace=namespace, window_size=4, compress="f16-lz4")
    store = RedisStore.from_config(cfg)
    pipeline = CapturePipeline(cfg, store=store)
    for i in range(8):
        pipeline.capture_token("tr", i, [float(i)] * 4)
    keys = pipeline.flush("tr")["shards"]
    store.close()
    redis_client.delete(keys[1])
    with pytest.raises(ShardsMissing) as info:
        read_shards(redis_client, keys)
    assert isinstance(info.value, KeyError)
    assert info.value.keys == [keys[1]]
    assert keys[1] in str(info.value) and "expired" in str(info.value)


def test_redis_down_drops_and_never_raises(dead_redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    cfg = CaptureConfig("m", "h", window_size=4, redis_url=dead_redis_url, flush_timeout_s=5)
    store = RedisStore.from_config(cfg, socket_timeout_s=0.2)
    pipeline = CapturePipeline(cfg, store=store)
    x = _x(30, 8)
    started = time.perf_counter()
    for i in range(30):
        pipeline.capture_token("tr", i, x[i])
    capture_s = time.perf_counter() - started
    envelope = pipeline.flush("tr")
    store.close()
    assert capture_s < 0.5, "capture must not wait for Redis"
    assert envelope["dropped"] == 30 and envelope["shards"] == [] and envelope["tokens"] == 30
    assert sum("unavailable" in r.message for r in caplog.records) == 1


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server binary not installed")
def test_redis_killed_mid_capture(namespace: str) -> None:
    """Start a private redis-server, capture, kill it half way: the first shards land, the rest are counted."""
    redis = pytest.importorskip("redis")
    with private_redis() as server:
        client = redis.Redis(port=server.port)
        cfg = CaptureConfig("m", "h", namespace=namespace, window_size=4, redis_url=server.url)
        store = RedisStore.from_config(cfg, socket_timeout_s=0.3)
        pipeline = CapturePipeline(cfg, store=store)
        x = _x(32, 8)
        for i in range(16):
            pipeline.capture_token("tr", i, x[i])
        deadline = time.time() + 5
        while len(client.keys(f"{namespace}:*")) < 4 and time.time() < deadline:
            time.sleep(0.02)
        server.stop()
        for i in range(16, 32):
            pipeline.capture_token("tr", i, x[i])
        envelope = pipeline.flush("tr")
        store.close()
    assert envelope["shards"] == [f"{namespace}:tr:0:{w}" for w in range(4)]
    assert envelope["dropped"] == 16
