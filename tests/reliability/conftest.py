"""The fault suite's world: its own PostgreSQL cluster, its own Redis, gunicorn `-w 2` and prefork Celery workers.

Nothing here touches the machine's shared PostgreSQL or Redis, so a test may kill, stop and restart them freely.
The servers and the web server live for the whole package; each test starts its own worker(s) and, at teardown,
kills every process it started (also when it failed), cancels its traces still active (so their runs do not spill
into the next test) and empties the broker.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.local_servers import ServiceStack, free_port, kill_group, postgres_bin, private_postgres, private_redis

from .world import DICTIONARY_LAYERS, TENANT, World


def _missing_tools() -> list[str]:
    missing = [tool for tool in ("redis-server",) if shutil.which(tool) is None]
    try:
        postgres_bin()
    except RuntimeError:
        missing.append("initdb/pg_ctl")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        missing.append("runuser")
    return missing


# No test of the suite may hang CI: each is bounded far above its own bounded waits (teardown still runs).
TEST_TIMEOUT_S = 420


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/reliability/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.reliability)
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT_S))


@pytest.fixture(scope="package")
def world_servers():
    missing = _missing_tools()
    if missing:
        pytest.skip(f"the fault suite needs {', '.join(missing)}")
    from hypergraph_site.demo.samples import write_dictionary

    workdir = Path(tempfile.mkdtemp(prefix="hg-reliability-"))
    dict_root = workdir / "dicts"
    layer_folder = write_dictionary(dict_root, name="sample")
    # Layers 0..8 (links to the sample's layer 6) before the web server starts, which reads the dictionary's layers
    # at accept time: one layer more than MAX_LAYERS, so that bound is testable apart from "layer not in dictionary".
    for layer in DICTIONARY_LAYERS:
        if not (link := layer_folder.parent / f"layer_{layer}").exists():
            link.symlink_to(layer_folder, target_is_directory=True)
    with private_postgres() as pg, private_redis() as redis_server:
        db_url = pg.createdb("reliability")
        stack = ServiceStack(workdir, {
            "DATABASE_URL": db_url,
            "REDIS_URL": redis_server.url,
            "DICT_ROOT": str(dict_root),
            "DICT_NAME": "sample",
            "ARTIFACT_ROOT": str(workdir / "artifacts"),
            "GRAPH_ROOT": str(workdir / "graphs"),
            "DEV_MODE": "1",
            "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            # The suite measures recovery from faults with 40 traces in flight, not load shedding: a backlog limit
            # of an hour keeps backpressure from degrading or shedding them (tests/e2e/test_backpressure.py).
            "BP_MAX_BACKLOG_SENTENCE": "3600",
            "BP_MAX_BACKLOG_TOKEN": "3600",
        })
        try:
            stack.manage("migrate", "--noinput")
            key = stack.manage("create_tenant", TENANT).strip().splitlines()[-1]
            port = free_port()
            stack.start_web(port, workers=2)
            yield World(pg=pg, redis=redis_server, stack=stack, db_url=db_url, web_port=port, key=key,
                        dict_root=dict_root, graph_root=workdir / "graphs")
        finally:
            stack.stop_all()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def world(world_servers: World, request):
    """The package's world for one test; everything the test started is killed afterwards, on failure too."""
    world_servers.workers = []
    yield world_servers
    for process, _ in world_servers.workers:
        kill_group(process)
        if process in world_servers.stack.processes:
            world_servers.stack.processes.remove(process)
    world_servers.workers = []
    # A fault test leaves the servers up again; if it failed half-way, bring them back for the next test.
    if not world_servers.pg.is_running():
        world_servers.pg.start()
    world_servers.redis.start()
    world_servers.ledger().cancel_active()
    import redis

    redis.Redis.from_url(world_servers.redis.url).flushdb()
