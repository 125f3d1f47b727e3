"""Load with accounting: small traces sent over HTTP by client threads, every response recorded.

A small trace is what a client sends for one short answer: a completion with its tokens, one `activations` event
with inline f16 rows for the sample dictionary's layer, and `finalize`. A client retries an event after a 503 (the
documented outage answer, honouring `Retry-After`) or a connection error, exactly as `ingest.client.IngestClient`
does, but here every attempt is recorded so the test can account for it: which answers came, when, and whether any
was a 5xx other than a documented 503.

No Django here: the test process talks to the service only over HTTP, and to its database with psycopg.
"""
from __future__ import annotations

import base64
import http.client
import json
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from typing import Callable

TERMINAL = ("complete", "failed", "canceled", "shed")

# Short answers: one or two sentences, 8-14 tokens each (explainer.text tokenization).
SMALL_TEXTS = (
    "Cells divide by mitosis. The nucleus holds the genome.",
    "Rates rose again this quarter. Bond prices fell.",
    "The function returns a list. Each loop appends one item.",
    "Rain is expected tonight. Winds stay light.",
    "The river runs to the sea. Mountains rise in the north.",
    "Whisk the eggs. Fold in the flour slowly.",
)
SMALL_TOPICS = ("Biology", "Finance", "Code", "Weather", "Geography", "Cooking")


@cache
def _template(n: int) -> tuple[dict, dict]:
    """Completion and activations payloads of small trace kind `n` (planted rows, so the graph is meaningful)."""
    from hypergraph_site.demo.samples import LAYER, make_dictionary, planted_activations
    from explainer.text import tokenize

    text = SMALL_TEXTS[n % len(SMALL_TEXTS)]
    tokens = tokenize(text)
    acts = planted_activations(make_dictionary(), SMALL_TOPICS[n % len(SMALL_TOPICS)], len(tokens), seed=100 + n)
    completion = {"model": "sample-model", "model_hash": "sha256:sample", "prompt": "Explain briefly.",
                  "text": text, "tokens": tokens}
    activations = {"layer": LAYER, "token_offset": 0, "encoding": "f16-base64", "shape": list(acts.shape),
                   "data": base64.b64encode(acts.astype("<f2").tobytes()).decode(), "convention": "hf_raw"}
    return completion, activations


def small_trace_events(trace_id: str, n: int = 0, granularity: str = "sentence") -> list[dict]:
    """The three `/ingest` bodies of one small trace, in order."""
    completion, activations = _template(n % len(SMALL_TEXTS))
    return [
        {"trace_id": trace_id, "event_type": "completion", "granularity": granularity, "payload": completion},
        {"trace_id": trace_id, "event_type": "activations", "payload": activations},
        {"trace_id": trace_id, "event_type": "finalize", "payload": {}},
    ]


# --- HTTP ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Answer:
    at: float  # time.monotonic() when the answer (or the connection error) came
    trace_id: str
    event_type: str
    status: int | None  # None: no HTTP answer (connection refused, reset, timeout)
    content_type: str = ""
    retry_after: str | None = None
    body: str = ""  # the first bytes, for messages
    seconds: float = 0.0
    path: str = "/ingest"  # what was asked: POST /ingest, or a GET of the read API


class Http:
    """A minimal keep-alive-free HTTP client (gunicorn's sync workers close every connection anyway)."""

    def __init__(self, port: int, key: str, timeout_s: float = 15.0) -> None:
        self.port = port
        self.key = key
        self.timeout_s = timeout_s

    def request(self, method: str, path: str, body: dict | bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout_s)
        try:
            all_headers = {"Authorization": f"Api-Key {self.key}", "Accept": "application/json",
                           **({"Content-Type": "application/json"} if data is not None else {}), **(headers or {})}
            conn.request(method, path, body=data, headers=all_headers)
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        status, _, raw = self.request(method, path, body)
        try:
            return status, json.loads(raw or b"{}")
        except ValueError:
            return status, {"raw": raw[:500].decode(errors="replace")}


# --- Load ----------------------------------------------------------------------------------------------

@dataclass
class LoadResult:
    answers: list[Answer] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)  # traces whose finalize got a 202
    abandoned: dict[str, str] = field(default_factory=dict)  # trace → why the client gave up on it
    started_at: float = 0.0
    ended_at: float = 0.0

    def codes(self) -> Counter:
        return Counter(a.status for a in self.answers)

    def server_errors(self, allowed: Callable[[Answer], bool] = lambda a: False) -> list[Answer]:
        """5xx answers (and dropped connections) that `allowed` does not excuse."""
        return [a for a in self.answers if (a.status is None or a.status >= 500) and not allowed(a)]

    def summary(self) -> str:
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(self.codes().items(), key=lambda kv: str(kv[0])))
        return (f"{len(self.accepted)} traces accepted, {len(self.abandoned)} abandoned, {len(self.answers)} answers "
                f"({codes}) in {self.ended_at - self.started_at:.1f}s")


class LoadRunner:
    """Sends `count` small traces with `threads` client threads in the background; bounded in count and time.

    An event is retried (same body: the service acknowledges identical events again) after a 503, a 5xx or a
    connection error, waiting `Retry-After` (capped) or a short backoff, until `give_up_s` after the trace began;
    any other 4xx abandons the trace (a bug, reported by the test). `pace_s` spaces the traces a thread starts.
    """

    def __init__(self, http: Http, prefix: str, count: int, *, threads: int = 4, pace_s: float = 0.0,
                 give_up_s: float = 90.0, retry_after_cap_s: float = 1.0, granularity: str = "sentence") -> None:
        self.http = http
        self.prefix = prefix
        self.count = count
        self.threads = threads
        self.pace_s = pace_s
        self.give_up_s = give_up_s
        self.retry_after_cap_s = retry_after_cap_s
        self.granularity = granularity
        self.result = LoadResult()
        self._todo: queue.Queue[int] = queue.Queue()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._stop = threading.Event()

    def trace_ids(self) -> list[str]:
        return [f"{self.prefix}-{i:04d}" for i in range(self.count)]

    def start(self) -> "LoadRunner":
        for i in range(self.count):
            self._todo.put(i)
        self.result.started_at = time.monotonic()
        self._workers = [threading.Thread(target=self._run, daemon=True, name=f"load-{n}")
                         for n in range(self.threads)]
        for worker in self._workers:
            worker.start()
        return self

    def accepted_count(self) -> int:
        with self._lock:
            return len(self.result.accepted)

    def wait_accepted(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.accepted_count() < count and time.monotonic() < deadline and self.running():
            time.sleep(0.05)

    def running(self) -> bool:
        return any(worker.is_alive() for worker in self._workers)

    def stop(self, timeout_s: float = 20.0) -> None:
        """Ask every client thread to stop after its current request, and wait for them."""
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout_s)

    def join(self, timeout_s: float) -> LoadResult:
        deadline = time.monotonic() + timeout_s
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        if self.running():
            self.stop()
        self.result.ended_at = time.monotonic()
        return self.result

    def _record(self, answer: Answer) -> None:
        with self._lock:
            self.result.answers.append(answer)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                n = self._todo.get_nowait()
            except queue.Empty:
                return
            trace_id = f"{self.prefix}-{n:04d}"
            began = time.monotonic()
            for event in small_trace_events(trace_id, n, self.granularity):
                outcome = self._send(event, began)
                if outcome is not None:
                    with self._lock:
                        self.result.abandoned[trace_id] = outcome
                    break
            else:
                with self._lock:
                    self.result.accepted.append(trace_id)
            if self.pace_s:
                time.sleep(self.pace_s)

    def _send(self, event: dict, began: float) -> str | None:
        """None once the event got a 202; else why the trace was abandoned."""
        attempt = 0
        while True:
            sent = time.monotonic()
            try:
                status, headers, raw = self.http.request("POST", "/ingest", event)
                answer = Answer(time.monotonic(), event["trace_id"], event["event_type"], status,
                                headers.get("content-type", ""), headers.get("retry-after"), raw[:300].decode(
                                    errors="replace"), time.monotonic() - sent)
            except (OSError, http.client.HTTPException) as exc:
                status, answer = None, Answer(time.monotonic(), event["trace_id"], event["event_type"], None,
                                              body=f"{type(exc).__name__}: {exc}", seconds=time.monotonic() - sent)
            self._record(answer)
            if status == 202:
                return None
            if status is not None and status < 500:
                return f"{event['event_type']} -> {status}: {answer.body}"
            if self._stop.is_set() or time.monotonic() - began > self.give_up_s:
                return f"{event['event_type']}: gave up after {attempt + 1} attempts (last {status}: {answer.body})"
            delay = min(self.retry_after_cap_s, 0.1 * 2 ** attempt)
            if answer.retry_after:
                try:
                    delay = min(self.retry_after_cap_s, max(delay, float(answer.retry_after)))
                except ValueError:
                    pass
            time.sleep(delay)
            attempt += 1
