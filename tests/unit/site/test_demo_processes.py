"""The demo's children stop with it, whatever stops it, and it says which stopped."""
from __future__ import annotations

import os
import signal
import subprocess
import time

from hypergraph_site.demo import processes


def _child(script: str) -> tuple[subprocess.Popen, int]:
    """A shell in a session of its own that starts a grandchild and prints its pid."""
    shell = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True)
    return shell, int(shell.stdout.readline())


def _stopped(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has stopped; its parent reaps it
    except FileNotFoundError:
        return True


def _gone(pid: int, timeout_s: float = 5.0) -> bool:
    """Stopped within `timeout_s`: a signalled grandchild exits a moment later, more so on a loaded machine."""
    deadline = time.monotonic() + timeout_s
    while not _stopped(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_sigterm_ends_the_block_and_stops_every_child_and_its_group_newest_first():
    lines: list[str] = []
    before = signal.getsignal(signal.SIGTERM)
    with processes.supervised(lines.append) as children:
        first, first_grandchild = _child("sleep 60 & echo $!; wait")
        children.add("the first", first)
        second, second_grandchild = _child("sleep 60 & echo $!; wait")
        children.add("the second", second)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        raise AssertionError("SIGTERM did not end the block")
    assert lines == ["SIGTERM received: stopping", f"stopped the second, pid {second.pid}",
                     f"stopped the first, pid {first.pid}"]
    assert first.returncode is not None and second.returncode is not None
    assert _gone(first_grandchild) and _gone(second_grandchild)
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigint_is_a_stop_too_and_a_child_deaf_to_sigterm_is_killed_with_its_group():
    lines: list[str] = []
    with processes.supervised(lines.append, timeout_s=1) as children:
        deaf, grandchild = _child("trap '' TERM; sleep 60 & echo $!; wait")
        children.add("the deaf one", deaf)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    assert lines == ["SIGINT received: stopping", f"stopped the deaf one, pid {deaf.pid} (killed after 1 s)"]
    assert deaf.returncode == -signal.SIGKILL and _gone(grandchild)


def test_children_stop_when_the_block_ends_normally_or_by_an_error():
    lines: list[str] = []
    try:
        with processes.supervised(lines.append) as children:
            child, _ = _child("echo 0; sleep 60")
            children.add("the child", child)
            raise RuntimeError("the web server did not answer")
    except RuntimeError:
        pass
    assert lines == [f"stopped the child, pid {child.pid}"] and child.returncode is not None
