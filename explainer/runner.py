"""How one stage runs inside a worker: claim its lease, keep it while working, ride out outages, hand over.

Outages of Redis, the broker or the database are retried here, in the task, with capped exponential backoff for at
least `TASK_RETRY_WINDOW_S`: the retries need neither the broker nor the database, which may be what is down. Input
problems fail the trace at once. Whatever happens, the lease in the trace row is the safety net: if this process
dies, or cannot record an outcome, the lease expires and the sweeper publishes the stage again.
"""
from __future__ import annotations

import contextvars
import logging
import random
import threading
import time
from typing import Callable, Mapping, TypeVar

import kombu.exceptions
import redis
import structlog
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connection
from django.utils import timezone
from opentelemetry import trace as otel_trace
from opentelemetry.context import Context
from opentelemetry.trace import StatusCode

import sae

from . import metrics, services
from .load_reading import throughput_count
from .artifacts import ArtifactMissing
from .leases import owner_token
from .log_context import trace_context_bind
from .object_store import StorageUnavailable
from .models import Stage, Trace
from .pipeline import PipelineError, public_message
from .tracing import stage_span

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Input problems no retry can fix: the trace fails at once with the message.
PERMANENT_ERRORS = (PipelineError, sae.DictionaryError, ArtifactMissing)
# Outages a later attempt may not meet: retried with backoff for the retry window. The object store's are
# `StorageUnavailable` (botocore's connection errors and S3's 5xx answers, translated in `object_store`).
TRANSIENT_ERRORS = (redis.RedisError, kombu.exceptions.OperationalError, OperationalError, InterfaceError,
                    StorageUnavailable, ConnectionError, TimeoutError)
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
# A trace put back behind other tenants' work waits this long first, so a worker whose queue holds only deferred
# traces (the other tenant's message still on its way) does not spin on them.
DEFER_PAUSE_S = 0.05


def retry_transient(fn: Callable[[], T], *, what: str, window_s: float | None = None) -> T:
    """Call `fn` until it succeeds, retrying transient errors until `window_s` has passed; then the error propagates.

    The last attempt is made at the end of the window, so a failure is reported only after retries that span it.

    Waits double from `BACKOFF_FIRST_S` up to `BACKOFF_MAX_S`, each jittered within [50%, 100%] so that workers
    retrying together spread out without ever retrying at once. Broken database connections are dropped between
    attempts, so the next attempt reconnects.
    """
    window = settings.TASK_RETRY_WINDOW_S if window_s is None else window_s
    deadline = time.monotonic() + window
    delay = BACKOFF_FIRST_S
    while True:
        try:
            return fn()
        except TRANSIENT_ERRORS as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise
            logger.warning("%s: %s: %s; retrying in about %.1fs", what, type(exc).__name__, exc, delay)
            close_old_connections()
            time.sleep(min(delay * random.uniform(0.5, 1.0), remaining))
            delay = min(delay * 2, BACKOFF_MAX_S)


class LeaseKeeper:
    """Renews a stage's lease from a background thread while the stage works."""

    def __init__(self, trace_pk: int, owner: str) -> None:
        self.trace_pk = trace_pk
        self.owner = owner
        self.lost = threading.Event()
        self._stop = threading.Event()
        # The thread logs with the stage's context (trace, run, stage, request id).
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._run,), name=f"lease-{trace_pk}", daemon=True)

    def __enter__(self) -> "LeaseKeeper":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        interval = max(settings.STAGE_LEASE_S / 3, 0.5)
        try:
            while not self._stop.wait(interval):
                try:
                    if not services.trace_renew_lease(trace_pk=self.trace_pk, owner=self.owner):
                        self.lost.set()
                        return
                except TRANSIENT_ERRORS as exc:
                    logger.warning("renewing the lease of trace %s failed: %s", self.trace_pk, exc)
                    close_old_connections()
        finally:
            connection.close()


def run_chain(stage: Stage, trace_pk: int, run_id: str, works: Mapping[Stage, Callable[[Trace], object]],
              finish: Callable[[Trace, str, object, float], bool], *,
              runs_here: Callable[[Stage], bool] = lambda stage: False, parent: Context | None = None) -> None:
    """Claim `stage` of the run and work through the chain from there, as long as `runs_here` takes the next stage;
    the first stage it does not take is published for a worker that does.

    The last stage's output goes to `finish`, which completes the run. Continuing here hands the lease straight
    from one stage to the next (one conditional UPDATE) under one lease keeper, and saves a broker round trip and
    a task start per stage; nothing is lost if this process dies on the way, because the due stage and its lease
    are in the trace row and the sweeper publishes the stage when the lease expires.

    Each stage runs in a span whose parent is `parent` (the span context the message carried) for the first and the
    previous stage's span after that, and its seconds go to `hypergraph_stage_duration_seconds`.
    """
    owner = owner_token()
    claimed = retry_transient(
        lambda: services.trace_claim_stage(trace_pk=trace_pk, run_id=run_id, stage=stage, owner=owner),
        what=f"claiming {stage} of trace {trace_pk}")
    if not claimed:
        return  # another holder, a superseded run or a finished trace: nothing to do
    with LeaseKeeper(trace_pk, owner):
        trace = retry_transient(lambda: Trace.objects.select_related("tenant").get(pk=trace_pk),
                                what=f"reading trace {trace_pk}")
        trace_context_bind(trace, run_id=run_id, stage=stage)
        _observe_queue_lag(stage, trace)
        while True:
            structlog.contextvars.bind_contextvars(stage=str(stage))
            with stage_span(stage=str(stage), trace_pk=trace_pk, run_id=run_id, granularity=trace.granularity,
                            parent=parent) as span:
                parent = otel_trace.set_span_in_context(span)
                started = time.perf_counter()
                ok, output = _work(stage, trace, run_id, works[stage], owner)
                if not ok:
                    span.set_status(StatusCode.ERROR, "the stage failed; see the trace's error")
                    return
                seconds = time.perf_counter() - started
                metrics.STAGE_SECONDS.labels(stage=stage, granularity=trace.granularity).observe(seconds)
                logger.info("stage %s of trace %s done in %.3f s", stage, trace_pk, seconds)
                if stage.next is None:
                    if retry_transient(lambda: finish(trace, owner, output, seconds),
                                       what=f"finishing trace {trace_pk}"):
                        throughput_count(granularity=trace.granularity)
                    return
                keep = runs_here(stage.next)
                timings = {**trace.timings, stage: round(seconds, 4)}
                advanced = retry_transient(
                    lambda: services.trace_advance(trace_pk=trace_pk, run_id=run_id, stage=stage, owner=owner,
                                                   timings=timings, keep=keep),
                    what=f"advancing trace {trace_pk} past {stage}")
            if not advanced:
                return
            trace.timings, stage = timings, stage.next
            if not keep:
                break
    services.stage_publish(trace_pk=trace_pk, run_id=run_id, stage=stage, context=parent)


def _observe_queue_lag(stage: Stage, trace: Trace) -> None:
    """Finalize → the first start of the run's first stage (a redelivered or swept start is not queueing)."""
    if stage == Stage.LOAD and trace.attempts == 1 and trace.finalized_at is not None:
        lag = (timezone.now() - trace.finalized_at).total_seconds()
        metrics.QUEUE_LAG.labels(granularity=trace.granularity).observe(max(0.0, lag))


def _work(stage: Stage, trace: Trace, run_id: str, work: Callable[[Trace], object],
          owner: str) -> tuple[bool, object]:
    """(True, output) of one stage's work; (False, None) once a failure has been recorded for the trace, or
    backpressure shed it or put it back in the queue."""
    try:
        return True, retry_transient(lambda: work(trace), what=f"{stage} of trace {trace.pk}")
    except services.TraceDeferred as exc:
        logger.info("trace %s goes back behind the queue: %s", trace.pk, exc)
        time.sleep(DEFER_PAUSE_S)
        retry_transient(lambda: services.trace_defer(trace_pk=trace.pk, run_id=run_id, owner=owner),
                        what=f"deferring trace {trace.pk}")
        return False, None
    except services.TraceShed as exc:
        why = str(exc)
        retry_transient(lambda: services.trace_shed(trace_pk=trace.pk, run_id=run_id, reason=why),
                        what=f"shedding trace {trace.pk}")
        return False, None
    except PERMANENT_ERRORS as exc:
        reason = str(exc)
    except MemoryError:
        reason = f"{stage} ran out of memory: the trace is too large for this worker"
    except TRANSIENT_ERRORS as exc:
        reason = f"{type(exc).__name__}: {exc} (still failing after retrying for {settings.TASK_RETRY_WINDOW_S}s)"
    except Exception as exc:  # noqa: BLE001 - a bug must fail this trace, never the worker
        logger.exception("%s of trace %s failed unexpectedly", stage, trace.pk)
        reason = f"internal error in {stage}: {type(exc).__name__}: {exc}"
    _fail(trace.pk, run_id, stage, reason)
    throughput_count(granularity=trace.granularity)
    return False, None


def takes_queue_of(consumed_queues: frozenset[str]) -> Callable[[Stage], bool]:
    """Whether a worker consuming `consumed_queues` runs a stage itself (`STAGE_INLINE` on, and it takes the
    stage's queue) rather than publishing it; keeping the trace on one host also keeps its artifacts local."""
    return lambda stage: bool(settings.STAGE_INLINE) and services.stage_queue(stage) in consumed_queues


def _fail(trace_pk: int, run_id: str, stage: Stage, reason: str) -> None:
    """Record the failure; if even that cannot be recorded, the lease expires and the stage is tried again."""
    reason = public_message(reason)
    try:
        retry_transient(lambda: services.trace_fail(trace_pk=trace_pk, run_id=run_id, stage=stage, reason=reason),
                        what=f"recording the failure of trace {trace_pk}")
    except TRANSIENT_ERRORS:
        logger.error("could not record the failure of trace %s (%s); its lease will expire and the sweeper will "
                     "run %s again", trace_pk, reason, stage)
