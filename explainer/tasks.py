"""Thin Celery wrappers: each stage task runs the chain's pipeline functions from its stage (`runner.run_chain`).

Tasks never chain each other through Celery: a finished stage advances the trace row, so the database always says
what is due and the sweeper can re-send anything lost. The next stage then runs in the same task when this worker
takes its queue, or is published (`services.stage_publish`) for a worker that does.
"""
from __future__ import annotations

import os
from typing import Callable

from celery import shared_task
from celery.app.task import Context as CeleryContext
from celery.signals import (setup_logging, task_prerun, worker_init, worker_process_init, worker_process_shutdown,
                            worker_ready, worker_shutdown)
from django.conf import settings
from django.db.backends.signals import connection_created
from threadpoolctl import threadpool_limits

from . import pipeline, services
from .degrade import StagePlan
from .heartbeat import Heartbeat
from .log_context import task_context_bind
from .metrics_export import process_metrics_retire, worker_metrics_serve
from .models import Stage, Trace
from .runner import run_chain, takes_queue_of
from .sweeper import Sweeper
from .tracing import context_of

# The W3C trace-context headers a stage message may carry (`services.stage_publish`).
TRACE_HEADERS = ("traceparent", "tracestate")

STAGE_TASK_OPTIONS = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}

# Noted at worker start, before the pool forks, so pool processes inherit them: the queues this worker consumes, and
# the BLAS threads each prefork process may use (None: leave BLAS as it is).
_consumed_queues: frozenset[str] = frozenset()
_blas_threads: int | None = None
_prefork = False


def _planned(work: Callable[[Trace, StagePlan], object]) -> Callable[[Trace], object]:
    """A stage's work behind the backpressure look every stage start takes (the first one decides the trace's
    degradation, or sheds or defers it: `services.trace_degradation_decide`), given the configs that leaves it."""
    def planned(trace: Trace) -> object:
        services.trace_degradation_decide(trace=trace)
        return work(trace, pipeline.stage_plan_of(trace))
    return planned


STAGE_WORK = {stage: _planned(work) for stage, work in {
    Stage.LOAD: lambda t, plan: pipeline.load_stage(t, pipeline.artifact_store(), plan),
    Stage.SAE_DECODE: lambda t, plan: pipeline.sae_decode_stage(t, pipeline.artifact_store(), pipeline.sae_service(),
                                                                plan),
    Stage.ATTRIBUTE: lambda t, plan: pipeline.attribute_stage(t, pipeline.artifact_store(), pipeline.sae_service(),
                                                              plan),
    Stage.BUILD: lambda t, plan: pipeline.build_stage(t, pipeline.artifact_store(), plan),
    Stage.PERSIST: lambda t, plan: pipeline.persist_stage(t, pipeline.artifact_store()),
}.items()}


def _persist_finish(trace: Trace, owner: str, graph: pipeline.StoredGraph, seconds: float) -> bool:
    return pipeline.persist_finish(trace, pipeline.artifact_store(), owner, graph, seconds)


def run_from(stage: Stage, trace_pk: int, run_id: str, request: CeleryContext | None = None) -> None:
    """Run `stage`, then each following stage this worker takes itself, publishing the first one it does not.

    `request` is the task's request: the span context its message headers carry becomes the stage span's parent.
    """
    carrier = {name: value for name in TRACE_HEADERS if (value := getattr(request, name, None))}
    run_chain(stage, trace_pk, run_id, STAGE_WORK, _persist_finish, runs_here=takes_queue_of(_consumed_queues),
              parent=context_of(carrier))


@shared_task(name=services.STAGE_TASKS[Stage.LOAD], bind=True, **STAGE_TASK_OPTIONS)
def stage_load(self, trace_pk: int, run_id: str) -> None:
    run_from(Stage.LOAD, trace_pk, run_id, self.request)


@shared_task(name=services.STAGE_TASKS[Stage.SAE_DECODE], bind=True, **STAGE_TASK_OPTIONS)
def stage_sae_decode(self, trace_pk: int, run_id: str) -> None:
    run_from(Stage.SAE_DECODE, trace_pk, run_id, self.request)


@shared_task(name=services.STAGE_TASKS[Stage.ATTRIBUTE], bind=True, **STAGE_TASK_OPTIONS)
def stage_attribute(self, trace_pk: int, run_id: str) -> None:
    run_from(Stage.ATTRIBUTE, trace_pk, run_id, self.request)


@shared_task(name=services.STAGE_TASKS[Stage.BUILD], bind=True, **STAGE_TASK_OPTIONS)
def stage_build(self, trace_pk: int, run_id: str) -> None:
    run_from(Stage.BUILD, trace_pk, run_id, self.request)


@shared_task(name=services.STAGE_TASKS[Stage.PERSIST], bind=True, **STAGE_TASK_OPTIONS)
def stage_persist(self, trace_pk: int, run_id: str) -> None:
    run_from(Stage.PERSIST, trace_pk, run_id, self.request)


@setup_logging.connect
def _keep_django_logging(**kwargs) -> None:
    """Connected, so Celery leaves logging as Django's `LOGGING` set it: worker lines are JSON like the web's."""


@task_prerun.connect
def _bind_task_context(task=None, **kwargs) -> None:
    task_context_bind(task.request.headers)


@worker_init.connect
def _note_worker_shape(sender=None, **kwargs) -> None:
    """Remember the queues this worker takes, commit stage transitions asynchronously, and in a prefork pool share
    the cores between the processes' BLAS threads and skip the decode service's wait for a batch."""
    global _consumed_queues, _blas_threads, _prefork
    _consumed_queues = frozenset(sender.app.amqp.queues.consume_from or ())
    if settings.WORKER_ASYNC_COMMIT:
        connection_created.connect(_commit_asynchronously, dispatch_uid="worker-async-commit")
    pool = sender.pool_cls  # a name ("prefork") or the class, depending on how the worker was started
    _prefork = "prefork" in str(getattr(pool, "__module__", pool))
    if _prefork:
        _blas_threads = max(1, (os.cpu_count() or 1) // max(1, int(sender.concurrency or 1)))
        # A prefork process decodes one trace at a time, so a decode never finds company to batch with: waiting
        # for it would only delay every trace. An explicit SAE_MAX_WAIT_MS still wins.
        os.environ.setdefault("SAE_MAX_WAIT_MS", "0")


def _commit_asynchronously(sender, connection, **kwargs) -> None:
    """Worker connections do not wait for the WAL flush of each stage transition (`WORKER_ASYNC_COMMIT`).

    A transition lost in a database crash loses no work: the trace row then shows the earlier stage with a lease,
    which expires, and the sweeper runs that stage again (stages are idempotent). The one write that must be durable,
    the completion that lets the artifacts be deleted, asks for a synchronous commit itself
    (`services.trace_complete`).
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO off")


@worker_process_init.connect
def _limit_blas_threads(**kwargs) -> None:
    """N prefork processes each running BLAS on every core oversubscribe the machine: small products then wait on
    busy threads (see `attribution.threads`). Each process gets its share of the cores instead."""
    if _blas_threads:
        threadpool_limits(limits=_blas_threads, user_api="blas")


_sweeper: Sweeper | None = None
_heartbeat: Heartbeat | None = None


@worker_ready.connect
def _start_sweeper(sender=None, **kwargs) -> None:
    """Every worker sweeps (one at a time, under a lock): first now, for whatever was lost while none ran. It also
    says it is alive (`/readyz`) and, with `WORKER_METRICS_PORT`, serves its metrics."""
    global _sweeper, _heartbeat
    _sweeper = Sweeper()
    _sweeper.start()
    _heartbeat = Heartbeat(sender.hostname)
    _heartbeat.start()
    if settings.WORKER_METRICS_PORT:
        worker_metrics_serve(port=settings.WORKER_METRICS_PORT, prefork=_prefork)


@worker_shutdown.connect
def _stop_sweeper(sender=None, **kwargs) -> None:
    if _sweeper is not None:
        _sweeper.stop()
    if _heartbeat is not None:
        _heartbeat.stop()
    process_metrics_retire()


@worker_process_shutdown.connect
def _retire_pool_process(**kwargs) -> None:
    process_metrics_retire()
