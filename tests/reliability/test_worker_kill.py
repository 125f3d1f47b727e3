"""kill -9 of a worker mid-load: of its pool processes (the parent replaces them), or of the parent itself (then the
worker is started again, as a supervisor would). Every accepted trace completes within the bound, none twice."""
from __future__ import annotations

import os
import signal
import time

from tests.local_servers import pid_alive, process_children

from .scenario import Fault, run_fault

TRACES = 40


def _wait_for_running_stage(world, prefix: str, timeout_s: float = 30.0) -> None:
    """Kill while a stage is in flight, not between traces."""
    ledger = world.ledger()
    deadline = time.monotonic() + timeout_s
    while ledger.running_count(prefix) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)


def test_sigkill_of_the_worker_pool_processes(world):
    worker, _ = world.start_worker(concurrency=2)
    before = process_children(worker.pid)

    def kill_children(fault: Fault) -> None:
        _wait_for_running_stage(world, "kill-child")
        children = process_children(worker.pid)
        fault.began = fault.ended = time.monotonic()
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        fault.notes.append(f"SIGKILL to pool processes {children} of worker {worker.pid}")

    report = run_fault(world, "kill-child", TRACES, kill_children, name="SIGKILL worker children")
    after = process_children(worker.pid)
    report.fault.notes.append(f"pool processes now {after}")
    report.check()
    assert worker.poll() is None, "the worker parent exited after its children were killed"
    assert len(after) == 2 and not set(after) & set(before), f"children not replaced: {before} -> {after}"


def test_sigkill_of_the_worker_parent_then_a_new_worker(world):
    worker, _ = world.start_worker(concurrency=2)
    orphans: list[int] = []

    def kill_parent(fault: Fault) -> None:
        _wait_for_running_stage(world, "kill-parent")
        orphans.extend(process_children(worker.pid))
        fault.began = time.monotonic()
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        time.sleep(1.0)  # a supervisor notices and restarts it
        world.start_worker(concurrency=2)
        fault.ended = time.monotonic()
        fault.notes.append(f"SIGKILL to worker parent {worker.pid}; its pool processes {orphans} left running, "
                           f"a new worker ready {fault.ended - fault.began:.1f}s later")

    report = run_fault(world, "kill-parent", TRACES, kill_parent, name="SIGKILL worker parent + restart")
    report.fault.notes.append(f"orphaned pool processes still alive at the end: "
                              f"{[pid for pid in orphans if pid_alive(pid)]}")
    report.check()
