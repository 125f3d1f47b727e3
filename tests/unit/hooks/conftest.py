"""Fixtures for the capture-hook tests: a real local Redis (skipped when absent) and unique key namespaces."""
from __future__ import annotations

import uuid
from typing import Iterator

import pytest

from tests.local_servers import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def namespace() -> str:
    """A key prefix no other test (or person) uses, so cleanup can delete by pattern."""
    return f"hgtest{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_client(namespace: str) -> Iterator[object]:
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    yield client
    keys = list(client.scan_iter(f"{namespace}:*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def dead_redis_url() -> str:
    """A URL where nothing listens: bind an ephemeral port, then release it."""
    return f"redis://127.0.0.1:{free_port()}/0"
