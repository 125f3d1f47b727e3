"""The README's main job, run as a user would: a fresh SQLite database, local files, a local Redis."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hypergraph_site.demo.samples import SAMPLE_TRACES
from tests.local_servers import free_port, private_redis

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_IDS = sorted(trace_id for trace_id, *_ in SAMPLE_TRACES)
STATUSES = ("import json; from explainer.models import Trace; "
            "print(json.dumps(dict(Trace.objects.values_list('trace_id', 'status'))))")


def _table_rows(stdout: str) -> dict[str, list[str]]:
    """The replay summary's rows (trace, status, nodes, incidences, seconds), by trace id."""
    rows = {}
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in re.split(r"[│┃|]", line) if cell.strip()]
        if len(cells) == 5 and cells[0] in SAMPLE_IDS:
            rows[cells[0]] = cells
    return rows


@pytest.mark.slow
def test_demo_completes_every_sample_trace_and_prints_the_urls_of_their_graphs(tmp_path):
    port = free_port()
    # A Redis of the test's own: the demo's worker must not take other tests' broker messages, nor they its.
    with private_redis() as redis_server:
        env = {
            **os.environ,
            "DEV_MODE": "1",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
            "DICT_ROOT": str(tmp_path / "dicts"),
            "ARTIFACT_ROOT": str(tmp_path / "artifacts"),
            "REDIS_URL": redis_server.url,
        }
        result = subprocess.run([sys.executable, "manage.py", "demo", "--exit", "--port", str(port)], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=240)
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]

    # The database the demo wrote: every sample trace, and each one complete.
    statuses = subprocess.run([sys.executable, "manage.py", "shell", "-c", STATUSES], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
    assert statuses.returncode == 0, statuses.stderr[-3000:]
    assert json.loads(statuses.stdout.strip().splitlines()[-1]) == {trace_id: "complete" for trace_id in SAMPLE_IDS}

    # What the user reads: a summary row per sample trace saying complete, with a graph of some size...
    rows = _table_rows(out)
    assert sorted(rows) == SAMPLE_IDS, out[-3000:]
    for trace_id, (_, status, nodes, incidences, _) in rows.items():
        assert status == "complete" and int(nodes) > 0 and int(incidences) > 0, rows[trace_id]
    # ...and, under "Finished graphs", the URL of every sample trace's graph (only complete traces are listed).
    assert "Finished graphs" in out, out[-3000:]
    finished = out.split("Finished graphs", 1)[1].split("Demo API key", 1)[0]
    listed = re.findall(rf"http://127\.0\.0\.1:{port}/v1/traces/([^/\s]+)/graph", finished)
    assert sorted(listed) == SAMPLE_IDS, finished
    # ...each next to its page in the trace browser, and the login to open them with.
    graph_views = re.findall(rf"http://127\.0\.0\.1:{port}/admin/explainer/trace/\d+/graph/", finished)
    assert len(graph_views) == len(SAMPLE_IDS), finished
    assert re.search(r"login admin / \S+", out), out[-3000:]
