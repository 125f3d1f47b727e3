"""One fault scenario: load starts, the fault is injected mid-way and ended, then every accepted trace is accounted.

`run_fault` returns a `Report`; `Report.check()` asserts the goal (every 202'd trace complete within RECOVERY_S
(+ SLACK_S) of the fault ending, none twice, no dead letter, no 5xx but the documented 503s while a dependency was
down) and prints the recovery time it measured.
"""
from __future__ import annotations

import json
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

from .accounting import Drain
from .traffic import Answer, Http, LoadResult, LoadRunner
from .world import RECOVERY_S, SLACK_S, World

# 503s may still come this long after a dependency is back (gunicorn's next connection attempt, pool refill).
OUTAGE_GRACE_S = 5.0


@dataclass
class Fault:
    """What a fault injection reports: when it began and ended, whether 503s are expected in between."""

    name: str
    began: float = 0.0
    ended: float = 0.0
    outage: bool = False  # a dependency was down: documented 503s allowed in [began, ended + grace]
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    fault: Fault
    load: LoadResult
    drain: Drain
    recovery_s: float
    bound_s: float  # every accepted trace must be terminal this long after the fault (or the load) ended
    duplicates: list[str]
    dead_letters: list
    probes: list[Answer]
    http_checked: dict[str, int]  # trace → status of a final GET /v1/traces/<id> that disagrees with the database
    logs: str = ""

    def allowed(self, answer: Answer) -> bool:
        """A documented outage answer: 503, JSON, Retry-After, while the dependency was down (or just after).
        `/readyz` says 503 exactly when a dependency is down, by design: JSON, no Retry-After needed."""
        readiness = answer.path == "/readyz"
        return (self.fault.outage and answer.status == 503 and _is_json(answer, envelope=not readiness)
                and (readiness or answer.retry_after is not None)
                and self.fault.began <= answer.at <= self.fault.ended + OUTAGE_GRACE_S)

    def line(self) -> str:
        errors = self.load.server_errors(self.allowed) + [a for a in self.probes if not self._probe_ok(a)]
        return (f"[{self.fault.name}] {self.load.summary()}; fault {self.fault.ended - self.fault.began:.1f}s; "
                f"all terminal {self.recovery_s:.1f}s after the fault ended (bound {self.bound_s:.0f}s); "
                f"{self.drain.describe(0)}; {len(self.duplicates)} duplicates; "
                f"{len(self.dead_letters)} dead letters; {len(errors)} unexcused 5xx; "
                f"{len(self.probes)} read probes" + "".join(f"; {n}" for n in self.fault.notes))

    def _probe_ok(self, answer: Answer) -> bool:
        return answer.status is not None and (answer.status < 500 or self.allowed(answer))

    def check(self) -> None:
        print("\n" + self.line())
        unexcused = self.load.server_errors(self.allowed)
        bad_probes = [a for a in self.probes if not self._probe_ok(a)]
        problems = []
        if self.load.abandoned:
            problems.append(f"client gave up on {len(self.load.abandoned)} traces: "
                            f"{list(self.load.abandoned.items())[:5]}")
        if unexcused:
            problems.append(f"{len(unexcused)} 5xx/no answer outside the documented 503s: "
                            f"{[_show(a, self.fault) for a in unexcused[:5]]}")
        if bad_probes:
            problems.append(f"{len(bad_probes)} read-API probes answered 5xx outside the documented 503s: "
                            f"{[_show(a, self.fault) for a in bad_probes[:5]]}")
        if not self.drain.done or self.drain.not_complete():
            problems.append(f"not every accepted trace complete within {self.bound_s:.0f}s of the fault ending: "
                            f"{self.drain.describe()}")
        if self.duplicates:
            problems.append(f"explained more than once: {self.duplicates[:5]}")
        if self.dead_letters:
            problems.append(f"{len(self.dead_letters)} dead letters: {self.dead_letters[:3]}")
        if self.http_checked:
            problems.append(f"GET /v1/traces/<id> disagrees for {len(self.http_checked)}: "
                            f"{list(self.http_checked.items())[:5]}")
        assert not problems, "\n".join(problems) + "\n" + self.logs


def _is_json(answer: Answer, envelope: bool) -> bool:
    """JSON content; with `envelope`, the API's error shape `{"errors": [...]}` (checked when the recorded first
    bytes hold the whole body)."""
    if "application/json" not in answer.content_type:
        return False
    try:
        return not envelope or "errors" in json.loads(answer.body)
    except ValueError:
        return len(answer.body) >= 300  # cut short by the recording, not malformed


def _show(answer: Answer, fault: Fault) -> str:
    what = (f"POST /ingest {answer.event_type} of {answer.trace_id}" if answer.path == "/ingest"
            else f"GET {answer.path}")
    return (f"{what} -> {answer.status} at fault{answer.at - fault.began:+.1f}s "
            f"({answer.content_type or '-'}, Retry-After {answer.retry_after}): {answer.body[:120]!r}")


class Prober:
    """Reads the API (a trace's status, /readyz) once a `interval_s` in the background, recording the answers."""

    def __init__(self, http: Http, trace_id: Callable[[], str | None], interval_s: float = 0.5) -> None:
        self.http = http
        self.trace_id = trace_id
        self.interval_s = interval_s
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="prober")

    def __enter__(self) -> "Prober":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(20)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            trace_id = self.trace_id()
            for path in ([f"/v1/traces/{trace_id}"] if trace_id else []) + ["/readyz"]:
                try:
                    status, headers, raw = self.http.request("GET", path)
                    self.answers.append(Answer(time.monotonic(), trace_id or "", "GET", status,
                                               headers.get("content-type", ""), headers.get("retry-after"),
                                               raw[:300].decode(errors="replace"), path=path))
                except OSError as exc:
                    self.answers.append(Answer(time.monotonic(), trace_id or "", "GET", None, body=str(exc),
                                               path=path))


def run_fault(world: World, prefix: str, count: int, inject: Callable[[Fault], None], *, name: str,
              threads: int = 4, inject_at: float = 0.4, probe: bool = False,
              bound_s: float = RECOVERY_S + SLACK_S) -> Report:
    """Start `count` small traces, call `inject(fault)` once `inject_at` of them are accepted (it fills in `began`
    and `ended`), let the load finish, then wait for every accepted trace at most `bound_s` after the fault ended
    (or the load, if later) and account."""
    ledger = world.ledger()
    load = LoadRunner(world.http, prefix, count, threads=threads).start()
    fault = Fault(name)
    accepted_first = lambda: load.result.accepted[0] if load.result.accepted else None  # noqa: E731
    prober = Prober(world.http, accepted_first) if probe else None
    try:
        with prober or nullcontext():
            load.wait_accepted(max(1, int(count * inject_at)), timeout_s=60)
            inject(fault)
            result = load.join(timeout_s=RECOVERY_S + SLACK_S)
    except BaseException:
        load.stop()  # the injection failed: no client thread outlives the test
        raise
    if not fault.ended:  # no fault injected: the bound counts from the end of the load
        fault.began = fault.ended = result.ended_at
    horizon = max(fault.ended, result.ended_at) + bound_s
    waited_from = time.monotonic()
    drain = ledger.wait_terminal(result.accepted, timeout_s=max(1.0, horizon - waited_from))
    recovery = waited_from + drain.seconds - fault.ended
    mismatched = {}
    for trace_id in result.accepted:
        status, body = world.http.json("GET", f"/v1/traces/{trace_id}")
        row = drain.rows.get(trace_id)
        if status != 200 or row is None or body.get("status") != row.status:
            mismatched[trace_id] = status
    return Report(fault=fault, load=result, drain=drain, recovery_s=recovery, bound_s=bound_s,
                  duplicates=ledger.duplicates(result.accepted), dead_letters=ledger.dead_letters(result.accepted),
                  probes=prober.answers if prober else [], http_checked=mismatched,
                  logs=world.worker_logs() if not drain.done else "")
