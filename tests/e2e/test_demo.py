"""The README's main job, run as a user would, three times: a fresh SQLite database, local files, and a Redis the demo
starts itself. The first run is stopped with SIGTERM, the second with Ctrl-C's SIGINT, the third ends by itself.

With torch and transformers installed the demo runs the committed language model (its traces are generated, captured
and explained with logit values); without them it replays the bundled sample traces."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hypergraph_site.demo.lm import LM_IDS
from hypergraph_site.demo.samples import SAMPLE_TRACES
from tests.local_servers import free_port

ROOT = Path(__file__).resolve().parents[2]
WITH_LM = all(importlib.util.find_spec(name) is not None for name in ("torch", "transformers"))
DEMO_IDS = list(LM_IDS) if WITH_LM else [trace_id for trace_id, *_ in SAMPLE_TRACES]
SERVING = "Servers keep running"
STATE = ("import json; from explainer.models import ApiKey, Explanation, Trace; "
         "from explainer.graph_documents import graph_load; print(json.dumps({"
         "'statuses': dict(Trace.objects.values_list('trace_id', 'status')), "
         "'keys': list(ApiKey.objects.filter(tenant__slug='demo').values_list('name', 'revoked')), "
         "'values': sorted({i['attributes']['value'] for e in Explanation.objects.all() "
         "for i in graph_load(explanation=e)['incidences']})}))")


def _table_rows(stdout: str) -> dict[str, list[str]]:
    """The replay summary's rows (trace, status, nodes, incidences, seconds), by trace id."""
    rows = {}
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in re.split(r"[│┃|]", line) if cell.strip()]
        if len(cells) == 5 and cells[0] in DEMO_IDS:
            rows[cells[0]] = cells
    return rows


def _descendants(pid: int) -> set[int]:
    """Every process below `pid`, from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _running(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _stopped_by_signal(args: list[str], env: dict, out: Path, signum: int) -> tuple[str, set[int]]:
    """Run the demo until it serves, send `signum`; its output and the processes it had started."""
    with open(out, "w") as log:
        demo = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while SERVING not in out.read_text():
            assert demo.poll() is None and time.monotonic() < deadline, out.read_text()[-3000:]
            time.sleep(0.3)
        children = _descendants(demo.pid)
        demo.send_signal(signum)
        assert demo.wait(60) == 0, out.read_text()[-3000:]
    finally:
        if demo.poll() is None:
            demo.kill()
    return out.read_text(), children


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="the demo starts redis-server itself here")
def test_demo_explains_every_trace_stops_every_child_on_a_signal_and_reruns_without_piling_up(tmp_path):
    port, redis_port, model_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "DEV_MODE": "1",
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "DICT_ROOT": str(tmp_path / "dicts"),
        "ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "GRAPH_ROOT": str(tmp_path / "graphs"),
        # Nothing answers here, so the demo starts a redis-server of its own: it must stop with the rest.
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
    }
    demo = [sys.executable, "manage.py", "demo", "--port", str(port), "--model-port", str(model_port),
            "--var", str(tmp_path / "var")]
    # With the language model the demo asks its questions through the model server, which stops with the rest.
    children_named = [f"the web server (gunicorn, port {port})", "the Celery worker", "redis-server",
                      *([f"the model server (serve_model, port {model_port})"] if WITH_LM else [])]

    # 1. A first run explains every demo trace, serves, and stops every child on SIGTERM.
    out, children = _stopped_by_signal(demo, env, tmp_path / "first.txt", signal.SIGTERM)
    assert ("language model" if WITH_LM else "the bundled sample traces") in out, out[-3000:]
    rows = _table_rows(out)
    assert sorted(rows) == sorted(DEMO_IDS), out[-3000:]
    for trace_id, (_, status, nodes, incidences, _) in rows.items():
        assert status == "complete" and int(nodes) > 0 and int(incidences) > 0, rows[trace_id]
    finished = out.split("Finished graphs", 1)[1].split("Demo API key", 1)[0]
    listed = re.findall(rf"http://127\.0\.0\.1:{port}/v1/traces/([^/\s]+)/graph", finished)
    assert sorted(listed) == sorted(DEMO_IDS), finished
    first_views = re.findall(rf"http://127\.0\.0\.1:{port}/admin/explainer/trace/\d+/graph/", finished)
    assert len(first_views) == len(DEMO_IDS), finished
    assert re.search(r"login admin / \S+", out), out[-3000:]
    key = re.search(r"Demo API key \(created, kept in \S+\): (\S+)", out).group(1)

    assert len(children) >= 5, children  # redis-server, the worker, gunicorn's master and its two workers
    assert "SIGTERM received: stopping" in out
    stopped = out.split("SIGTERM received: stopping", 1)[1]
    for name in children_named:
        assert f"stopped {name}" in stopped, stopped
    assert [pid for pid in children if _running(pid)] == []
    assert not _listening(port) and not _listening(redis_port) and not _listening(model_port)

    # 2. A second run reuses the key, says the traces are explained, and stops on SIGINT (Ctrl-C).
    out, children = _stopped_by_signal(demo, env, tmp_path / "second.txt", signal.SIGINT)
    assert f"{', '.join(DEMO_IDS)}: already explained (run with --fresh to explain them " \
           "again)" in out, out[-3000:]
    assert _table_rows(out) == {}  # nothing was sent again
    assert f"Demo API key (reused, kept in {tmp_path / 'var' / 'demo_api_key'}): {key}" in out
    assert "SIGINT received: stopping" in out and out.count("\nstopped ") == len(children_named), out[-1500:]
    assert [pid for pid in children if _running(pid)] == [] and not _listening(port)

    # 3. --fresh explains them again (new traces), with the same key, and --exit stops by itself.
    third = subprocess.run([*demo, "--exit", "--fresh"], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=240)
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    assert sorted(_table_rows(third.stdout)) == sorted(DEMO_IDS) and "already explained" not in third.stdout
    views = re.findall(rf"http://127\.0\.0\.1:{port}/admin/explainer/trace/\d+/graph/", third.stdout)
    assert len(views) == len(DEMO_IDS) and not set(views) & set(first_views)
    assert f"): {key}" in third.stdout and third.stdout.count("\nstopped ") == len(children_named)
    assert not _listening(port) and not _listening(redis_port)

    state = subprocess.run([sys.executable, "manage.py", "shell", "-c", STATE], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
    assert state.returncode == 0, state.stderr[-3000:]
    state = json.loads(state.stdout.strip().splitlines()[-1])
    assert state["statuses"] == {trace_id: "complete" for trace_id in DEMO_IDS}
    assert state["keys"] == [["demo", False]]  # three runs, one key
    # the worker has the language model itself: attribution values go through it (the sample has no model)
    assert state["values"] == (["model"] if WITH_LM else ["cosine"])
