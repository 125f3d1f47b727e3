"""What happened to every accepted trace, read straight from the suite's own database (psycopg, no Django).

The test process's Django settings point at the shared test database, not at the suite's cluster, so the ledger
speaks SQL to the explainer's tables directly.
"""
from __future__ import annotations

import gzip
import json
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from .traffic import TERMINAL


@dataclass(frozen=True)
class TraceRow:
    trace_id: str
    status: str
    stage: str
    error: str
    finalized_at: object
    finished_at: object


@dataclass(frozen=True)
class Drain:
    """The outcome of waiting for traces to become terminal."""

    done: bool
    seconds: float  # from the start of the wait until the last one was terminal (or the deadline)
    rows: dict[str, TraceRow]

    def not_terminal(self) -> dict[str, TraceRow]:
        return {t: r for t, r in self.rows.items() if r.status not in TERMINAL}

    def not_complete(self) -> dict[str, TraceRow]:
        return {t: r for t, r in self.rows.items() if r.status != "complete"}

    def describe(self, limit: int = 8) -> str:
        bad = self.not_complete()
        lines = [f"{t}: {r.status} at {r.stage or '-'} {r.error[:160]!r}" for t, r in list(bad.items())[:limit]]
        return f"{len(bad)} of {len(self.rows)} not complete" + ("".join("\n  " + line for line in lines))


class Ledger:
    def __init__(self, db_url: str, graph_root: Path) -> None:
        self.db_url = db_url
        self.graph_root = graph_root

    def _query(self, sql: str, params: tuple = (), attempts: int = 20) -> list[tuple]:
        """One autocommit query; retried for a few seconds when the server is (re)starting."""
        for attempt in range(attempts):
            try:
                with psycopg.connect(self.db_url, autocommit=True, connect_timeout=3) as conn:
                    cursor = conn.execute(sql, params)
                    return cursor.fetchall() if cursor.description else []
            except psycopg.OperationalError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.5)
        return []

    def rows(self, trace_ids: list[str]) -> dict[str, TraceRow]:
        found = self._query(
            "SELECT trace_id, status, stage, error, finalized_at, finished_at FROM explainer_trace "
            "WHERE trace_id = ANY(%s)", (trace_ids,))
        return {r[0]: TraceRow(*r) for r in found}

    def terminal_count(self, trace_ids: list[str]) -> int:
        return self._query("SELECT count(*) FROM explainer_trace WHERE trace_id = ANY(%s) AND status = ANY(%s)",
                           (trace_ids, list(TERMINAL)))[0][0]

    def running_count(self, prefix: str) -> int:
        return self._query("SELECT count(*) FROM explainer_trace WHERE trace_id LIKE %s AND status = 'running'",
                           (prefix + "%",))[0][0]

    def wait_terminal(self, trace_ids: list[str], timeout_s: float, poll_s: float = 0.25) -> Drain:
        """Poll until every one of `trace_ids` is terminal, at most `timeout_s`; bounded in time."""
        began = time.monotonic()
        deadline = began + timeout_s
        while True:
            done = self.terminal_count(trace_ids) == len(trace_ids)
            if done or time.monotonic() > deadline:
                return Drain(done, time.monotonic() - began, self.rows(trace_ids))
            time.sleep(poll_s)

    def duplicates(self, trace_ids: list[str]) -> list[str]:
        """Every way a trace was explained more than once: explanation rows, a rewritten explanation, a document
        whose node or incidence ids repeat (two runs' output merged; documents read from `graph_root`)."""
        problems = []
        for trace_id, explanations, rewritten, keys in self._query(
            """
            SELECT t.trace_id, count(e.id),
                   coalesce(bool_or(e.updated - e.created > interval '1 second'), false),
                   array_remove(array_agg(e.object_key), NULL)
            FROM explainer_trace t LEFT JOIN explainer_explanation e ON e.trace_id = t.id
            WHERE t.trace_id = ANY(%s) AND t.status = 'complete'
            GROUP BY t.trace_id
            """, (trace_ids,)):
            if explanations != 1:
                problems.append(f"{trace_id}: {explanations} explanations")
            if rewritten:
                problems.append(f"{trace_id}: explanation written again after it was created")
            for key in keys:
                document = json.loads(gzip.decompress((self.graph_root / key).read_bytes()))
                node_ids = [n["id"] for n in document["nodes"]]
                inc_ids = [i["id"] for i in document["incidences"]]
                if len(set(node_ids)) != len(node_ids) or len(set(inc_ids)) != len(inc_ids):
                    problems.append(f"{trace_id}: repeated ids in the graph ({len(node_ids)} nodes, "
                                    f"{len(set(node_ids))} distinct; {len(inc_ids)} incidences, "
                                    f"{len(set(inc_ids))} distinct)")
        return problems

    def event_types(self, trace_id: str) -> list[str]:
        return [r[0] for r in self._query(
            "SELECT e.event_type FROM explainer_traceevent e JOIN explainer_trace t ON t.id = e.trace_id "
            "WHERE t.trace_id = %s ORDER BY e.id", (trace_id,))]

    def dead_letters(self, trace_ids: list[str]) -> list[tuple[str, str, str]]:
        return [tuple(r) for r in self._query(
            "SELECT t.trace_id, d.stage, d.reason FROM explainer_deadletter d "
            "JOIN explainer_trace t ON t.id = d.trace_id WHERE t.trace_id = ANY(%s) ORDER BY d.id", (trace_ids,))]

    def latencies(self, trace_ids: list[str]) -> list[float]:
        """finalize → complete seconds of the complete ones."""
        return [float(r[0]) for r in self._query(
            "SELECT extract(epoch FROM finished_at - finalized_at) FROM explainer_trace "
            "WHERE trace_id = ANY(%s) AND status = 'complete'", (trace_ids,))]

    def cancel_active(self) -> int:
        """Teardown: end every trace still queued or running, so the next test's worker has no inherited work."""
        rows = self._query("UPDATE explainer_trace SET status = 'canceled', error = 'canceled by the fault suite' "
                           "WHERE status IN ('queued', 'running') RETURNING id")
        return len(rows)
