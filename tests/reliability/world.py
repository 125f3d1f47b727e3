"""The fault suite's constants and its world: the servers, the web server and the workers a test started."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tests.local_servers import PrivatePostgres, PrivateRedis, ServiceStack

from .accounting import Ledger
from .traffic import Http

# The goal: every accepted trace is terminal within this many seconds of the fault ending ...
RECOVERY_S = 60.0
# ... plus this much for a loaded 2-core CI machine (its own noise, not the service's).
SLACK_S = float(os.environ.get("RELIABILITY_SLACK_S", "15"))
# Whatever happens, no worker of the suite may take more than this much address space: a bug that allocates
# terabytes gets a MemoryError in the worker instead of the shared machine's OOM killer.
WORKER_MEMORY_LIMIT = 6 * 1024 ** 3
TENANT = "reliability"
# The suite's dictionary has these layers, all of the sample's width (the sample has layer 6; the others link to it).
DICTIONARY_LAYERS = tuple(range(9))


@dataclass
class World:
    """The package's servers and web server, plus what the current test started."""

    pg: PrivatePostgres
    redis: PrivateRedis
    stack: ServiceStack
    db_url: str
    web_port: int
    key: str
    dict_root: Path
    graph_root: Path
    workers: list = field(default_factory=list)  # (process, log) of the workers the current test started

    @property
    def http(self) -> Http:
        return Http(self.web_port, self.key)

    def ledger(self) -> Ledger:
        return Ledger(self.db_url, self.graph_root)

    def start_worker(self, concurrency: int = 2, env: dict[str, str] | None = None):
        """A prefork worker (parent + `concurrency` children), ready; killed at the end of the test."""
        process, log = self.stack.start_worker(concurrency=concurrency, pool="prefork", env=env,
                                               memory_limit_bytes=WORKER_MEMORY_LIMIT)
        self.workers.append((process, log))
        return process, log

    def worker_logs(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {log.name} ---\n{log.read_text(errors='replace')[-chars:]}" for _, log in self.workers)
