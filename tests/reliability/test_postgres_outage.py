"""The suite's own PostgreSQL is stopped (`pg_ctl stop -m immediate`) for 20 s mid-load, then started again.
While it is down /ingest and the read API answer JSON 503 with Retry-After (never an HTML 500); afterwards every
accepted trace completes within the bound, none twice."""
from __future__ import annotations

import time

from .scenario import Fault, run_fault

TRACES = 40
OUTAGE_S = 20.0


def test_postgres_outage_of_20s(world):
    world.start_worker(concurrency=2)

    def outage(fault: Fault) -> None:
        fault.outage = True
        fault.began = time.monotonic()
        world.pg.stop("immediate")
        time.sleep(OUTAGE_S)
        world.pg.start()
        fault.ended = time.monotonic()
        fault.notes.append(f"PostgreSQL down {fault.ended - fault.began:.1f}s")

    report = run_fault(world, "pg-outage", TRACES, outage, name="PostgreSQL outage 20s", probe=True)
    during = [a for a in report.load.answers + report.probes if report.fault.began <= a.at <= report.fault.ended]
    report.fault.notes.append(f"answers while down: {sorted({str(a.status) for a in during})}")
    report.check()
    assert any(a.status == 503 for a in during), "no request met the outage: the test did not test it"
