"""Benchmark: what accepting an event costs, side by side, and how fast one worker explains small traces.

Part 1, on one gunicorn (`-w 2`) and one PostgreSQL, with the same client (6 threads, http.client) and the same
bodies (a small trace's completion and inline activations events, alternating):
  - a bare DRF APIView that answers 202 (the floor of a request on this stack),
  - the same view committing one row before answering (the price of "committed before 202"),
  - POST /ingest (authentication, validation, one accept transaction).
Targets are measured in interleaved rounds (bare, insert, ingest, bare, ...) after a warm-up round, so a change of
machine load hits all three alike; req/s is the median of the rounds. After the warm-up the database is analyzed, as
a running deployment's sweeper would have done by then (`_analyze` says why it matters).

Part 2, one Celery worker in prefork mode with 2 processes (`celery -A hypergraph_site worker -Q default,gpu -c 2`):
  - drain: N small traces sent without finalize, then all finalized at once; traces completed per second =
    N / (last finished_at - first finalized_at), read from the traces' rows;
  - latency: M more traces finalized one at a time at half the drained rate; finalize -> complete p50/p95 from
    finalized_at/finished_at.

It starts its own PostgreSQL cluster (durable: fsync and synchronous commit on, as in production; or
`--database-url` of a database you own, which it migrates), its own redis-server, gunicorn and the worker, and stops
them all at the end.

Run: .venv/bin/python benchmarks/load_bench.py [--quick] [--requests 600] [--rounds 3] [--traces 200]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from tests.local_servers import ServiceStack, free_port, private_postgres, private_redis  # noqa: E402
from tests.reliability.traffic import small_trace_events  # noqa: E402

THREADS = 6
GOAL_INGEST_SHARE = 0.70  # /ingest accepted req/s >= 70% of the one-insert view's
GOAL_TRACES_PER_S = 20.0  # small traces completed per second by one 2-process worker
# The table of the one-insert view (benchmarks/bench_urls.py), created here: it exists only for this benchmark.
BENCH_TABLE_SQL = ("CREATE TABLE IF NOT EXISTS bench_row (id bigserial PRIMARY KEY, body text NOT NULL, "
                   "created timestamptz NOT NULL DEFAULT now())")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


class Client:
    def __init__(self, port: int, key: str) -> None:
        self.port, self.key = port, key

    def post(self, path: str, body: bytes) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("POST", path, body=body, headers={"Authorization": f"Api-Key {self.key}",
                                                           "Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()


def _bodies(prefix: str, count: int) -> list[bytes]:
    """`count` request bodies: completion, activations, completion, ... of distinct small traces."""
    bodies = []
    for i in range((count + 1) // 2):
        completion, activations, _ = small_trace_events(f"{prefix}-{i:05d}", i)
        bodies += [json.dumps(completion).encode(), json.dumps(activations).encode()]
    return bodies[:count]


def _fire(client: Client, path: str, bodies: list[bytes], threads: int) -> tuple[float, list[float], dict]:
    """Send `bodies` with `threads` threads (a trace's two bodies on one thread, completion first); return wall
    seconds, per-request seconds and the count of each status."""
    pairs = [bodies[i:i + 2] for i in range(0, len(bodies), 2)]
    shares = [[body for pair in pairs[t::threads] for body in pair] for t in range(threads)]
    latencies: list[float] = []
    codes: dict = {}
    lock = threading.Lock()
    barrier = threading.Barrier(threads + 1)

    def run(share: list[bytes]) -> None:
        mine, my_codes = [], {}
        barrier.wait()
        for body in share:
            began = time.perf_counter()
            try:
                status = client.post(path, body)
            except OSError as exc:
                status = type(exc).__name__
            mine.append(time.perf_counter() - began)
            my_codes[status] = my_codes.get(status, 0) + 1
        with lock:
            latencies.extend(mine)
            for k, v in my_codes.items():
                codes[k] = codes.get(k, 0) + v

    workers = [threading.Thread(target=run, args=(share,)) for share in shares]
    for worker in workers:
        worker.start()
    barrier.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    return time.perf_counter() - began, latencies, codes


TARGETS = (("bare DRF view (202)", "/bench/bare", 202),
           ("bare view + one committed row", "/bench/insert", 202),
           ("/ingest (completion + inline activations)", "/ingest", 202))


def http_phase(client: Client, requests: int, rounds: int, after_warm_up=lambda: None) -> list[dict]:
    results = {name: {"rates": [], "latencies": [], "codes": {}} for name, _, _ in TARGETS}
    for round_no in range(rounds + 1):  # round 0 warms up (imports, connections, caches) and is not counted
        if round_no == 1:
            after_warm_up()
        for name, path, _ in TARGETS:
            count = requests if round_no else max(60, requests // 5)
            bodies = _bodies(f"b{round_no}-{path.strip('/').replace('/', '-')}", count)
            seconds, latencies, codes = _fire(client, path, bodies, THREADS)
            if round_no:
                results[name]["rates"].append(len(bodies) / seconds)
                results[name]["latencies"] += latencies
                for k, v in codes.items():
                    results[name]["codes"][k] = results[name]["codes"].get(k, 0) + v
    rows = []
    for name, _, expected in TARGETS:
        r = results[name]
        rows.append({"target": name, "rate": statistics.median(r["rates"]), "low": min(r["rates"]),
                     "high": max(r["rates"]), "p50_ms": 1000 * _percentile(r["latencies"], 0.5),
                     "p95_ms": 1000 * _percentile(r["latencies"], 0.95), "codes": r["codes"],
                     "ok": set(r["codes"]) == {expected}})
    return rows


def _analyze(db_url: str) -> None:
    """Give the planner statistics, as a deployment's sweeper does within seconds (`explainer.table_stats`); this
    phase runs no worker, so no sweeper.

    Until a table has been analyzed, PostgreSQL estimates one row for every index condition, so looking a trace up by
    (tenant, trace id) may pick a status or tenant index over the unique one, and then scan every open trace of the
    tenant: on a fresh database each accept did, and its cost grew with the rows the benchmark had sent.
    """
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("ANALYZE")


def _settled_size(access_log: Path) -> int:
    """The access log's size once the workers stopped appending to it (they write after each response)."""
    size = -1
    for _ in range(20):
        time.sleep(0.1)
        current = access_log.stat().st_size if access_log.exists() else 0
        if current == size:
            break
        size = current
    return max(size, 0)


def _server_ms(access_log: Path, offset: int) -> dict[str, float]:
    """Median milliseconds gunicorn spent on each path (its access log's request time, %(D)s microseconds), over the
    lines after `offset` (the warm-up round's lines are before it)."""
    per_path: dict[str, list[float]] = {}
    _settled_size(access_log)
    with open(access_log, "rb") as log:
        log.seek(offset)
        for line in log.read().decode(errors="replace").splitlines():
            path, _, micros = line.rpartition(" ")
            if micros.isdigit():
                per_path.setdefault(path, []).append(int(micros) / 1000)
    return {path: statistics.median(values) for path, values in per_path.items()}


class Traces:
    """The worker phase's view of the database (psycopg; this process does not configure Django)."""

    def __init__(self, db_url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(db_url, autocommit=True)

    def states(self, prefix: str) -> dict[str, int]:
        rows = self.conn.execute("SELECT status, count(*) FROM explainer_trace WHERE trace_id LIKE %s GROUP BY status",
                                 (prefix + "%",)).fetchall()
        return dict(rows)

    def wait_terminal(self, prefix: str, count: int, timeout_s: float) -> dict[str, int]:
        deadline = time.monotonic() + timeout_s
        while True:
            states = self.states(prefix)
            if sum(states.get(s, 0) for s in ("complete", "failed", "canceled", "shed")) >= count or \
                    time.monotonic() > deadline:
                return states
            time.sleep(0.2)

    def timing(self, prefix: str) -> tuple[float, float, list[float], dict[str, float]]:
        """(first finalized, last finished as epoch seconds, finalize->complete seconds, mean stage seconds)."""
        rows = self.conn.execute(
            "SELECT extract(epoch FROM finalized_at), extract(epoch FROM finished_at), timings FROM explainer_trace "
            "WHERE trace_id LIKE %s AND status = 'complete'", (prefix + "%",)).fetchall()
        if not rows:
            return float("nan"), float("nan"), [], {}
        stages: dict[str, list[float]] = {}
        for _, _, timings in rows:
            for stage, seconds in (timings or {}).items():
                if isinstance(seconds, (int, float)):
                    stages.setdefault(stage, []).append(float(seconds))
        return (min(float(r[0]) for r in rows), max(float(r[1]) for r in rows),
                [float(r[1]) - float(r[0]) for r in rows], {k: statistics.mean(v) for k, v in stages.items()})


def _send_all(client: Client, events: list[dict]) -> list:
    """Send events with THREADS threads, a trace's events in order on one thread; the statuses that were not 202."""
    by_trace: dict[str, list[bytes]] = {}
    for event in events:
        by_trace.setdefault(event["trace_id"], []).append(json.dumps(event).encode())
    traces = list(by_trace.values())
    bad: list = []
    lock = threading.Lock()

    def run(mine: list[list[bytes]]) -> None:
        for bodies in mine:
            for body in bodies:
                status = client.post("/ingest", body)
                if status != 202:
                    with lock:
                        bad.append(status)

    workers = [threading.Thread(target=run, args=(traces[i::THREADS],)) for i in range(THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return bad


def worker_phase(service: ServiceStack, client: Client, db_url: str, traces: int, latency_traces: int) -> dict:
    db = Traces(db_url)
    service.start_worker(concurrency=2, pool="prefork")
    # Warm-up: each pool process loads the dictionary on its first decode.
    _send_all(client, [e for i in range(4) for e in small_trace_events(f"warm-{i}", i)])
    db.wait_terminal("warm-", 4, 120)

    # Drain: everything but finalize first, then all finalizes at once.
    events = [small_trace_events(f"drain-{i:05d}", i) for i in range(traces)]
    bad = _send_all(client, [e for trio in events for e in trio[:2]])
    bad += _send_all(client, [trio[2] for trio in events])
    states = db.wait_terminal("drain-", traces, 60 + traces)
    first, last, _, stages = db.timing("drain-")
    drained = states.get("complete", 0)
    rate = drained / (last - first) if drained else 0.0

    # Latency: finalized one at a time at half the drained rate.
    events = [small_trace_events(f"lat-{i:05d}", i) for i in range(latency_traces)]
    bad += _send_all(client, [e for trio in events for e in trio[:2]])
    interval = 1.0 / max(0.5, rate / 2)
    began = time.monotonic()
    for n, trio in enumerate(events):
        time.sleep(max(0.0, began + n * interval - time.monotonic()))
        status = client.post("/ingest", json.dumps(trio[2]).encode())
        if status != 202:
            bad.append(status)
    lat_states = db.wait_terminal("lat-", latency_traces, 60 + latency_traces)
    _, _, latencies, _ = db.timing("lat-")
    return {"traces": traces, "drained": drained, "states": states, "rate": rate, "stages": stages,
            "arrival": 1.0 / interval, "latency_traces": latency_traces, "latency_states": lat_states,
            "p50": _percentile(latencies, 0.5), "p95": _percentile(latencies, 0.95), "bad": bad}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (small counts, one round)")
    parser.add_argument("--requests", type=int, default=600, help="requests per target per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--traces", type=int, default=200, help="small traces drained by the worker")
    parser.add_argument("--latency-traces", type=int, default=100)
    parser.add_argument("--database-url", help="a PostgreSQL database of yours (migrated by the bench) instead of "
                                               "a private cluster")
    parser.add_argument("--skip-worker", action="store_true", help="only the HTTP side-by-side")
    parser.add_argument("--conn-max-age", type=int, default=None,
                        help="the web server's DB_CONN_MAX_AGE (0: a new database connection per request), all "
                             "three targets alike; default: the project's")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds, args.traces, args.latency_traces = 120, 1, 30, 15

    load_at_start = os.getloadavg()
    with ExitStack() as stack:
        if args.database_url:
            db_url, db_kind = args.database_url, "given database"
        else:
            pg = stack.enter_context(private_postgres(durable=True))
            db_url, db_kind = pg.createdb("bench"), f"private PostgreSQL cluster (durable), port {pg.port}"
        redis_server = stack.enter_context(private_redis())
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hg-load-bench-")))
        from hypergraph_site.demo.samples import write_dictionary

        write_dictionary(work / "dicts", name="sample")
        service = ServiceStack(work, {
            "DATABASE_URL": db_url, "REDIS_URL": redis_server.url, "DICT_ROOT": str(work / "dicts"),
            "DICT_NAME": "sample", "ARTIFACT_ROOT": str(work / "artifacts"), "DEV_MODE": "1",
            "LOG_LEVEL": "WARNING",
            # The drain floods the queue on purpose to measure full, undegraded work: backpressure's backlog limits
            # are set out of reach (README "Backpressure and admission").
            "BP_MAX_BACKLOG_SENTENCE": "3600", "BP_MAX_BACKLOG_TOKEN": "3600",
        })
        stack.callback(service.stop_all)
        service.manage("migrate", "--noinput")
        import psycopg

        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(BENCH_TABLE_SQL)
        key = service.manage("create_tenant", "bench").strip().splitlines()[-1]
        port = free_port()
        access_log = work / "access.log"
        web_env = {"DJANGO_SETTINGS_MODULE": "benchmarks.bench_settings"}
        if args.conn_max_age is not None:
            web_env["DB_CONN_MAX_AGE"] = str(args.conn_max_age)
            db_kind += f", web server DB_CONN_MAX_AGE={args.conn_max_age}"
        service.start_web(port, workers=2, env=web_env,
                          extra_args=("--access-logfile", str(access_log), "--access-logformat", "%(U)s %(D)s"))
        client = Client(port, key)

        print(f"== accept: gunicorn -w 2, {THREADS} client threads, {args.requests} requests per target x "
              f"{args.rounds} rounds (+ a warm-up round); {db_kind}; load average at start "
              f"{load_at_start[0]:.2f}", flush=True)
        warm_log = {}

        def after_warm_up() -> None:
            _analyze(db_url)
            warm_log.update(offset=_settled_size(access_log))

        rows = http_phase(client, args.requests, args.rounds, after_warm_up=after_warm_up)
        server_ms = _server_ms(access_log, warm_log.get("offset", 0))
        insert_rate = rows[1]["rate"]
        print(f"{'target':44s} {'req/s':>7s} {'range':>13s} {'p50 ms':>7s} {'p95 ms':>7s} {'server ms':>9s} "
              f"{'vs insert':>9s}  codes")
        for row, (_, path, _) in zip(rows, TARGETS):
            print(f"{row['target']:44s} {row['rate']:7.0f} {row['low']:6.0f}-{row['high']:<6.0f} "
                  f"{row['p50_ms']:7.1f} {row['p95_ms']:7.1f} {server_ms.get(path, float('nan')):9.2f} "
                  f"{row['rate'] / insert_rate:8.0%}   {row['codes']}")
        print("(p50/p95: as the client saw it; server ms: median time inside gunicorn's worker, from its access log)")
        share = rows[2]["rate"] / insert_rate
        print(f"goal /ingest >= {GOAL_INGEST_SHARE:.0%} of the one-insert view: "
              f"{'MET' if share >= GOAL_INGEST_SHARE else 'NOT MET'} ({share:.0%})", flush=True)

        if not args.skip_worker:
            result = worker_phase(service, client, db_url, args.traces, args.latency_traces)
            print(f"== worker: one prefork worker, 2 processes, queues default,gpu; {args.traces} small traces "
                  f"(8-14 tokens, layer 6, d=384, sentence granularity)")
            print(f"drain:   {result['drained']}/{result['traces']} complete ({result['states']}), "
                  f"{result['rate']:.2f} traces/s (first finalize -> last complete)")
            by_cost = sorted(result["stages"].items(), key=lambda kv: -kv[1])
            stages = ", ".join(f"{stage} {1000 * seconds:.0f}" for stage, seconds in by_cost)
            print(f"         mean stage ms: {stages}")
            print(f"latency: {result['latency_traces']} traces finalized at {result['arrival']:.2f}/s: "
                  f"finalize -> complete p50 {result['p50']:.2f}s, p95 {result['p95']:.2f}s "
                  f"({result['latency_states']})")
            print(f"goal >= {GOAL_TRACES_PER_S:.0f} small traces/s by one 2-process worker: "
                  f"{'MET' if result['rate'] >= GOAL_TRACES_PER_S else 'NOT MET'} ({result['rate']:.2f}/s)")
            if result["bad"]:
                print(f"non-202 answers while sending traces: {result['bad'][:10]}")
        print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
