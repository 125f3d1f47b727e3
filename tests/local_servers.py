"""Throwaway local servers for tests that must take a dependency down without touching the shared one."""
from __future__ import annotations

import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator


def free_port() -> int:
    """A port nothing listens on right now: bind an ephemeral one, then release it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PrivateRedis:
    process: subprocess.Popen
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        """Kill the server (an outage, as a crash would cause it); safe to call twice."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    """A redis-server of the test's own on a free port, answering pings when the block starts."""
    import redis

    port = free_port()
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no"], stdout=subprocess.DEVNULL)
    server = PrivateRedis(process, port)
    try:
        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield server
    finally:
        server.stop()
