"""Throwaway local servers for tests that must take a dependency down without touching the shared one.

- `private_redis()`: a redis-server of the test's own (no persistence, so a restart loses every queue).
- `private_postgres()`: a PostgreSQL cluster of the test's own (initdb into a temporary folder, a free port), which
  a test may stop with `pg_ctl stop -m immediate` and start again on the same port and data.
- `ServiceStack`: the product's own processes against those servers: `manage.py` commands, gunicorn, Celery
  workers in prefork mode, each in its own session so that teardown (or a fault) can kill the whole group.

Used by `tests/reliability/` and `benchmarks/load_bench.py`; nothing here imports Django.
"""
from __future__ import annotations

import glob
import os
import pwd
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A port nothing listens on right now: bind an ephemeral one, then release it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(predicate, timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {timeout_s:.0f}s")
        time.sleep(interval_s)


# --- Redis ---------------------------------------------------------------------------------------------

@dataclass
class PrivateRedis:
    process: subprocess.Popen
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        """Kill the server (an outage, as a crash would cause it); safe to call twice."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def start(self) -> None:
        """Start a fresh, empty server on the same port (no persistence: what the old one held is gone)."""
        if self.process.poll() is None:
            return
        self.process = _redis_server(self.port)
        self.wait_ready()

    def restart(self) -> None:
        """A crash and a restart: kill -9, then a new empty server on the same port."""
        self.stop()
        self.start()

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        _wait(self.ping, timeout_s, f"redis-server on port {self.port} did not answer")


def _redis_server(port: int) -> subprocess.Popen:
    return subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, start_new_session=True)


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    """A redis-server of the test's own on a free port, answering pings when the block starts."""
    port = free_port()
    server = PrivateRedis(_redis_server(port), port)
    try:
        try:
            server.wait_ready(5.0)
        except RuntimeError:
            pass  # callers that need it up find out on first use, as before
        yield server
    finally:
        server.stop()


# --- PostgreSQL ----------------------------------------------------------------------------------------

def postgres_bin() -> Path:
    """The newest installed server's binaries (Debian layout), else wherever `initdb` is on PATH."""
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    if folders:
        return Path(folders[-1])
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    return Path(initdb).parent


@dataclass
class PrivatePostgres:
    """A cluster in `root` (owned by the `postgres` user when we are root: PostgreSQL refuses to run as root).

    `durable=False` turns fsync and full-page writes off: fast tests, and a server crash (`stop("immediate")`) still
    loses no acknowledged commit, because the WAL reached the operating system before the commit returned (only an
    OS crash could lose it). Synchronous commit stays on for that reason: with it off, an immediate stop loses the
    last few hundred milliseconds of acknowledged transactions. A benchmark that measures the price of a durable
    commit passes `durable=True`.
    """

    root: Path
    port: int
    durable: bool = False
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.root / "postgres.log"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        result = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=timeout_s,
                                cwd=self.root)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({result.returncode}): {result.stderr[-2000:]}"
                               f"{self.log_tail()}")
        return result

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return "\n--- postgres.log ---\n" + self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def initdb(self) -> None:
        self._run(str(postgres_bin() / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--no-sync", "--no-instructions")

    def start(self, timeout_s: float = 30.0) -> None:
        options = [f"-p {self.port}", "-c listen_addresses=127.0.0.1", f"-k {self.root}",
                   "-c max_connections=200", "-c shared_buffers=64MB"]
        if not self.durable:
            options += ["-c fsync=off", "-c full_page_writes=off"]
        self._run(str(postgres_bin() / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                  "-t", str(int(timeout_s)), "-o", " ".join(options), "start", timeout_s=timeout_s + 10)

    def stop(self, mode: str = "immediate") -> None:
        """`immediate`: every backend is killed at once, as in a crash (recovery runs at the next start)."""
        self._run(str(postgres_bin() / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def is_running(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def createdb(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        """Stop (immediately) whatever runs and remove the folder; safe to call twice."""
        if self.data.exists():
            try:
                self.stop("immediate")
            except (RuntimeError, subprocess.TimeoutExpired):
                pid = self.postmaster_pid()
                if pid is not None:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def private_postgres(durable: bool = False) -> Iterator[PrivatePostgres]:
    """A running cluster of the caller's own on a free port; stopped and deleted when the block ends."""
    root = Path(tempfile.mkdtemp(prefix="hg-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
    os.chmod(root, 0o700)
    server = PrivatePostgres(root, free_port(), durable=durable)
    try:
        server.initdb()
        server.start()
        yield server
    finally:
        server.destroy()


# --- The product's processes ---------------------------------------------------------------------------

def process_children(pid: int) -> list[int]:
    """Direct children of `pid` (Linux /proc), e.g. the pool processes of a prefork Celery worker."""
    children: list[int] = []
    for task in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            children += [int(c) for c in Path(task).read_text().split()]
        except OSError:
            continue
    return sorted(set(children))


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def kill_group(process: subprocess.Popen, sig: int = signal.SIGKILL, timeout_s: float = 10.0) -> None:
    """Signal the process and every process of its session (started with `start_new_session`), then reap it."""
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout_s)


def _limit_memory(limit_bytes: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    return apply


@dataclass
class ServiceStack:
    """The service configured against private servers: `env` is what every process of it gets."""

    workdir: Path
    env: dict[str, str]
    processes: list[subprocess.Popen] = field(default_factory=list)
    _log_count: int = 0

    def log_path(self, name: str) -> Path:
        self._log_count += 1
        return self.workdir / "logs" / f"{self._log_count:02d}-{name}.log"

    def _full_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, **self.env, **(extra or {})}

    def manage(self, *args: str, timeout_s: float = 180.0, env: dict[str, str] | None = None) -> str:
        """Run `manage.py ARGS` to completion and return its stdout (stderr in the exception on failure)."""
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=self._full_env(env),
                                capture_output=True, text=True, timeout=timeout_s)
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
        return result.stdout

    def spawn(self, args: list[str], name: str, env: dict[str, str] | None = None,
              memory_limit_bytes: int | None = None) -> tuple[subprocess.Popen, Path]:
        log = self.log_path(name)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            process = subprocess.Popen(
                args, cwd=REPO_ROOT, env=self._full_env(env), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_limit_memory(memory_limit_bytes) if memory_limit_bytes else None,
            )
        self.processes.append(process)
        return process, log

    def start_web(self, port: int, workers: int = 2, env: dict[str, str] | None = None,
                  wsgi: str = "hypergraph_site.wsgi", timeout_s: float = 60.0,
                  extra_args: tuple[str, ...] = ()) -> subprocess.Popen:
        args = [sys.executable, "-m", "gunicorn", wsgi, "-b", f"127.0.0.1:{port}", "-w", str(workers),
                "--timeout", "60", "--graceful-timeout", "5", *extra_args]
        process, log = self.spawn(args, "gunicorn", env)
        _wait_http(f"http://127.0.0.1:{port}/healthz", timeout_s, process, log)
        return process

    def start_worker(self, concurrency: int = 2, pool: str = "prefork", queues: str = "default,gpu",
                     env: dict[str, str] | None = None, memory_limit_bytes: int | None = None,
                     timeout_s: float = 90.0) -> tuple[subprocess.Popen, Path]:
        """A Celery worker process as an operator starts it, and wait for its " ready." line."""
        args = [sys.executable, "-m", "celery", "-A", "hypergraph_site", "worker", "-Q", queues,
                "--pool", pool, "-c", str(concurrency), "-l", "info", "--without-gossip", "--without-mingle",
                "-n", f"reliability-{len(self.processes)}@%h"]
        process, log = self.spawn(args, "worker", env, memory_limit_bytes)
        _wait(lambda: b" ready." in log.read_bytes() or process.poll() is not None, timeout_s,
              f"Celery worker did not start (log {log})", 0.2)
        if process.poll() is not None:
            raise RuntimeError(f"Celery worker exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        return process, log

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            kill_group(process)
        self.processes.clear()


def _wait_http(url: str, timeout_s: float, process: subprocess.Popen, log: Path) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered:\n"
                               f"{log.read_text(errors='replace')[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout_s:.0f}s") from None
            time.sleep(0.2)
