"""The suite's own Redis crashes mid-load and comes back empty (no persistence: every queued message is lost).
/ingest answers 503 + Retry-After while it is down; every accepted trace still completes within the bound."""
from __future__ import annotations

import time

from .scenario import Fault, run_fault

TRACES = 40
DOWN_S = 2.0


def test_redis_restart_loses_the_queue_and_nothing_is_lost(world):
    world.start_worker(concurrency=2)

    def restart_redis(fault: Fault) -> None:
        fault.outage = True
        fault.began = time.monotonic()
        world.redis.stop()
        time.sleep(DOWN_S)
        world.redis.start()
        fault.ended = time.monotonic()
        fault.notes.append(f"redis down {fault.ended - fault.began:.1f}s, restarted empty")

    report = run_fault(world, "redis-restart", TRACES, restart_redis, name="Redis restart (queue lost)",
                       probe=True)
    report.check()
