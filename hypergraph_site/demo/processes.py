"""Starting the service's processes (Redis, web server, Celery worker) for the demo and the end-to-end tests."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import redis

# Where `python -m celery -A hypergraph_site` and gunicorn must start (not the folder of this module).
REPO_ROOT = Path(__file__).resolve().parents[2]


def redis_ensure(url: str, timeout_s: float = 10.0) -> str:
    """Return "running" or "started"; start a local redis-server when it is installed and not answering."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.ping()
        return "running"
    except redis.RedisError:
        pass
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError(f"Redis at {url} is not answering and redis-server is not installed "
                           "(apt-get install redis-server)")
    port = str(client.connection_pool.connection_kwargs.get("port", 6379))
    subprocess.run([server, "--daemonize", "yes", "--bind", "127.0.0.1", "--port", port,
                    "--save", "", "--appendonly", "no"], check=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            client.ping()
            return "started"
        except redis.RedisError:
            time.sleep(0.2)
    raise RuntimeError("redis-server was started but does not answer")


def start_worker(log_path: Path, env: dict[str, str] | None = None, queues: str = "default,gpu",
                 concurrency: int = 4) -> subprocess.Popen:
    """One worker on both queues (a CPU-only deployment); a thread pool lets decode requests of concurrent
    traces meet in the SAE service's micro-batches. The worker runs its own sweeper: no beat is needed."""
    args = [sys.executable, "-m", "celery", "-A", "hypergraph_site", "worker", "-Q", queues,
            "--pool", "threads", "-c", str(concurrency), "-l", "info", "--without-gossip", "--without-mingle"]
    return _spawn(args, log_path, env)


def start_web(port: int, log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    args = [sys.executable, "-m", "gunicorn", "hypergraph_site.wsgi", "-b", f"127.0.0.1:{port}",
            "-w", "2", "--timeout", "60", "--access-logfile", "-"]
    return _spawn(args, log_path, env)


def _spawn(args: list[str], log_path: Path, env: dict[str, str] | None) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                            cwd=REPO_ROOT, start_new_session=True)


def wait_http(url: str, timeout_s: float = 30.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f}s")


def stop(process: subprocess.Popen, timeout_s: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
