"""Starting the service's processes (Redis, web server, Celery worker) for the demo and the end-to-end tests, and
stopping them all again, whatever ends the demo.

Every process starts in a session (so a process group) of its own: Ctrl-C in the terminal reaches only the demo, not
its children, and stopping a child signals its whole group, so a gunicorn master's workers stop with it.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import redis

# Where `python -m celery -A hypergraph_site` and gunicorn must start (not the folder of this module).
REPO_ROOT = Path(__file__).resolve().parents[2]
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def redis_ensure(url: str, log_path: Path, timeout_s: float = 10.0) -> subprocess.Popen | None:
    """None when Redis answers at `url`; else a local redis-server started on its port (when it is installed), to be
    stopped with the rest."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.ping()
        return None
    except redis.RedisError:
        pass
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError(f"Redis at {url} is not answering and redis-server is not installed "
                           "(apt-get install redis-server)")
    port = str(client.connection_pool.connection_kwargs.get("port", 6379))
    process = _spawn([server, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no"],
                     log_path, None)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            client.ping()
            return process
        except redis.RedisError:
            time.sleep(0.2)
    stop(process)
    raise RuntimeError(f"redis-server was started but does not answer (see {log_path})")


def start_worker(log_path: Path, env: dict[str, str] | None = None, queues: str = "default,gpu",
                 concurrency: int = 4) -> subprocess.Popen:
    """One worker on both queues (a CPU-only deployment); a thread pool lets decode requests of concurrent
    traces meet in the SAE service's micro-batches. The worker runs its own sweeper: no beat is needed."""
    args = [sys.executable, "-m", "celery", "-A", "hypergraph_site", "worker", "-Q", queues,
            "--pool", "threads", "-c", str(concurrency), "-l", "info", "--without-gossip", "--without-mingle"]
    return _spawn(args, log_path, env)


def metrics_env(folder: Path) -> dict[str, str]:
    """Prometheus multiprocess mode for the processes started here, so the web server's /metrics sums the worker's
    samples too (one host). The folder is emptied first: files of a previous run's processes would count again. An
    operator's own `PROMETHEUS_MULTIPROC_DIR` is left as it is."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return {}
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return {"PROMETHEUS_MULTIPROC_DIR": str(folder)}


def start_web(port: int, log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """gunicorn with `hypergraph_site.gunicorn_conf`, which retires an exited worker's live gauges."""
    args = [sys.executable, "-m", "gunicorn", "hypergraph_site.wsgi", "-c", "python:hypergraph_site.gunicorn_conf",
            "-b", f"127.0.0.1:{port}", "-w", "2", "--timeout", "60", "--access-logfile", "-"]
    return _spawn(args, log_path, env)


def start_model_server(port: int, log_path: Path, *, sidecar_url: str | None = None, api_key: str = "",
                       layers: list[int] = (), env: dict[str, str] | None = None) -> subprocess.Popen:
    """`manage.py serve_model`: the trained language model answering on `port`, sending its answers to the sidecar
    at `sidecar_url` (None: serving without capture)."""
    args = [sys.executable, "manage.py", "serve_model", "--port", str(port)]
    if sidecar_url is None:
        return _spawn([*args, "--no-capture"], log_path, env)
    args += ["--sidecar-url", sidecar_url, "--layers", ",".join(map(str, layers))]
    return _spawn(args, log_path, {**(env or {}), "SIDECAR_API_KEY": api_key})


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


def stop(process: subprocess.Popen, timeout_s: float = 10.0) -> bool:
    """Stop a process started here and everything in its process group: SIGTERM (gunicorn and Celery finish what
    they are doing), SIGKILL after `timeout_s`. True when it stopped on SIGTERM (or had already exited)."""
    graceful = True
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        graceful = False
    # Whatever of the group is left (all of it after a timeout, or a child its leader did not wait for) is killed.
    _signal_group(process, signal.SIGKILL)
    process.wait()
    return graceful


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)  # the group of a process started in its own session has the process's id
    except ProcessLookupError:
        pass


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived. A BaseException, like KeyboardInterrupt, so no `except Exception` swallows it on
    its way to the code that stops the children."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signal_name = signal.Signals(signum).name


def _interrupt(signum: int, frame) -> None:
    for each in STOP_SIGNALS:  # the stop that follows is not cut short by a second signal
        signal.signal(each, signal.SIG_IGN)
    raise Interrupted(signum)


class Children:
    """The processes started inside `supervised`, by name, in the order they started."""

    def __init__(self) -> None:
        self.started: list[tuple[str, subprocess.Popen]] = []

    def add(self, name: str, process: subprocess.Popen) -> subprocess.Popen:
        self.started.append((name, process))
        return process


@contextmanager
def supervised(report: Callable[[str], None], timeout_s: float = 10.0) -> Iterator[Children]:
    """Children added in the block are stopped when it ends, however it ends: normally, by an error, or by SIGTERM
    or SIGINT, which end the block (as `Interrupted`, swallowed here once reported). Without this, SIGTERM would end
    the demo at once and leave the web server holding its port and the worker taking tasks. Newest first, each on a
    line of its own; signals are ignored while they stop, so a second Ctrl-C cannot leave some running."""
    children = Children()
    previous = {each: signal.signal(each, _interrupt) for each in STOP_SIGNALS}
    try:
        yield children
    except Interrupted as interrupted:
        report(f"{interrupted.signal_name} received: stopping")
    finally:
        for each in STOP_SIGNALS:
            signal.signal(each, signal.SIG_IGN)
        try:
            for name, process in reversed(children.started):
                graceful = stop(process, timeout_s)
                report(f"stopped {name}, pid {process.pid}{'' if graceful else f' (killed after {timeout_s:.0f} s)'}")
        finally:
            for each, handler in previous.items():
                signal.signal(each, handler)
