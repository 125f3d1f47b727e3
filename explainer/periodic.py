"""A worker's background duties (the sweeper, the heartbeat): a daemon thread that does one thing now and then
every interval until stopped.

A failing round is logged and the loop goes on: these threads must outlive the outages (Redis, the database) they
exist to ride out. The thread's database connection is closed when it ends.
"""
from __future__ import annotations

import logging
import threading

from django.db import close_old_connections, connection

logger = logging.getLogger(__name__)


class Periodic:
    """Calls `tick()` at start and every `interval_s` seconds from a thread named `name`, until `stop()`."""

    name = "periodic"

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)

    def tick(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        try:
            while True:
                try:
                    self.tick()
                except Exception:  # noqa: BLE001 - a failed round (Redis or the database down) must not end the loop
                    logger.exception("%s failed; trying again in %ss", self.name, self.interval_s)
                    close_old_connections()
                if self._stop.wait(self.interval_s):
                    return
        finally:
            connection.close()
