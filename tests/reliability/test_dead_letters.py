"""Dead letters against the real worker: `manage.py replay --dead-letters` with its filters (`--trace`, `--stage`,
`--reason`, `--since`) re-runs only what they select, and a trace dead-lettered DEAD_LETTER_MAX_REPLAYS (3) times is
quarantined: skipped by later replays.

The failure is permanent and deterministic: the activations envelope names a shard that is not in Redis, so each
run fails at `load` with "shards expired or missing" and writes one more dead letter.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from .traffic import small_trace_events

DEAD_LETTER_MAX_REPLAYS = 3


def _fail_once(world, trace_id: str) -> None:
    http = world.http
    completion, _, finalize = small_trace_events(trace_id)
    envelope = {"trace_id": trace_id, "layers": [6], "tokens": 1, "d_model": 384, "summary": "dense",
                "shards": [f"hgcap:{trace_id}:6:0"], "dropped": 0, "convention": "hf_raw"}
    for event in (completion, {"trace_id": trace_id, "event_type": "activations", "payload": envelope}, finalize):
        status, body = http.json("POST", "/ingest", event)
        assert status == 202, (event["event_type"], status, body)


def _letters(world, trace_id: str) -> list[tuple]:
    """(stage, reason, replayed) of the trace's dead letters, oldest first."""
    return world.ledger()._query(
        "SELECT d.stage, d.reason, d.replayed_at IS NOT NULL FROM explainer_deadletter d "
        "JOIN explainer_trace t ON t.id = d.trace_id WHERE t.trace_id = %s ORDER BY d.id", (trace_id,))


def _run(world, trace_id: str) -> str:
    """The trace's current run id: a replay starts a new run."""
    return str(world.ledger()._query("SELECT run_id FROM explainer_trace WHERE trace_id = %s", (trace_id,))[0][0])


def _wait_failed(world, trace_id: str, letters: int, timeout_s: float = 50.0) -> None:
    """Bounded by a lost publish healed by the sweeper: STAGE_LEASE_S (30) + SWEEP_INTERVAL_S (5) + slack."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = world.ledger().rows([trace_id]).get(trace_id)
        if row is not None and row.status == "failed" and len(_letters(world, trace_id)) >= letters:
            return
        time.sleep(0.2)
    raise AssertionError(f"{trace_id} did not fail a {letters}. time: {world.ledger().rows([trace_id])}, "
                         f"{_letters(world, trace_id)}\n{world.worker_logs()}")


def _replay(world, *filters: str) -> str:
    return world.stack.manage("replay", "--dead-letters", *filters)


def test_replay_filters_and_quarantine(world):
    world.start_worker(concurrency=2)
    _fail_once(world, "dl-alpha")
    _fail_once(world, "dl-beta")
    _wait_failed(world, "dl-alpha", 1)
    _wait_failed(world, "dl-beta", 1)
    (stage, reason, _), = _letters(world, "dl-alpha")
    assert stage == "load" and "shard" in reason, reason
    after_both = datetime.now(timezone.utc).isoformat()
    runs = {t: _run(world, t) for t in ("dl-alpha", "dl-beta")}

    # Filters that select nothing replay nothing.
    for filters in (["--stage", "persist"], ["--reason", "no such reason anywhere"], ["--since", after_both],
                    ["--trace", "dl-nobody"]):
        _replay(world, *filters)
        assert {t: _run(world, t) for t in runs} == runs, filters
        assert [r for _, _, r in _letters(world, "dl-alpha") + _letters(world, "dl-beta")] == [False, False]

    # --trace (with matching --stage and --reason) replays that trace only.
    _replay(world, "--trace", "dl-alpha", "--stage", "load", "--reason", "shard")
    assert _run(world, "dl-alpha") != runs["dl-alpha"] and _run(world, "dl-beta") == runs["dl-beta"]
    _wait_failed(world, "dl-alpha", 2)
    assert [replayed for _, _, replayed in _letters(world, "dl-beta")] == [False]

    # A third failure, then the trace is quarantined: replays skip it, filtered or not.
    _replay(world, "--trace", "dl-alpha")
    _wait_failed(world, "dl-alpha", DEAD_LETTER_MAX_REPLAYS)
    quarantined_run = _run(world, "dl-alpha")
    out = _replay(world, "--trace", "dl-alpha") + _replay(world)
    time.sleep(1.0)
    assert _run(world, "dl-alpha") == quarantined_run, "a quarantined trace was replayed:\n" + out
    assert len(_letters(world, "dl-alpha")) == DEAD_LETTER_MAX_REPLAYS
    assert world.ledger().rows(["dl-alpha"])["dl-alpha"].status == "failed"
    assert "quarantined" in out, out
    # The unfiltered replay did take the other trace.
    assert _run(world, "dl-beta") != runs["dl-beta"]
