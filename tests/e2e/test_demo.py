"""The README's main job, run as a user would: a fresh SQLite database, local files, the local Redis."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.local_servers import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_ends_by_printing_the_urls_of_completed_graphs(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "DEV_MODE": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "DICT_ROOT": str(tmp_path / "dicts"),
        "ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "REDIS_URL": "redis://127.0.0.1:6379/14",
    }
    subprocess.run(["redis-cli", "-n", "14", "flushdb"], check=False, capture_output=True)
    result = subprocess.run([sys.executable, "manage.py", "demo", "--exit", "--port", str(port)], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for trace_id in ("sample-biology", "sample-code", "sample-finance"):
        assert f"http://127.0.0.1:{port}/v1/traces/{trace_id}/graph" in result.stdout
    assert "complete" in result.stdout
    graph_views = re.findall(rf"http://127\.0\.0\.1:{port}/admin/explainer/trace/\d+/graph/", result.stdout)
    assert len(graph_views) == 3, result.stdout
    assert re.search(r"login admin / \S+", result.stdout), result.stdout
