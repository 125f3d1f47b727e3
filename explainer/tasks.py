"""Thin Celery wrappers: claim the stage, call one pipeline function, own retries and the failure outcome."""
from __future__ import annotations

import logging
import time
from typing import Callable

import redis
from celery import Task, chain, shared_task
from celery.exceptions import Ignore
from celery.signals import worker_ready
from django.conf import settings
from django.db import InterfaceError, OperationalError

import sae

from . import pipeline, services
from .artifacts import ArtifactMissing
from .models import Stage, Trace

logger = logging.getLogger(__name__)

# Input problems no retry can fix: the trace fails at once with the message.
PERMANENT_ERRORS = (pipeline.PipelineError, sae.DictionaryError, ArtifactMissing)
# Outages that a later attempt may not meet: retried with backoff, then dead-lettered.
TRANSIENT_ERRORS = (redis.RedisError, OperationalError, InterfaceError, ConnectionError, TimeoutError)


class StageTask(Task):
    autoretry_for = TRANSIENT_ERRORS
    max_retries = settings.TASK_MAX_RETRIES
    retry_backoff = 2
    retry_backoff_max = 60  # well below the broker's visibility timeout
    retry_jitter = True
    acks_late = True
    reject_on_worker_lost = True
    stage: Stage

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        trace_pk, run_id = args
        services.trace_fail(trace_pk=trace_pk, run_id=run_id, stage=self.stage,
                            reason=f"{type(exc).__name__}: {exc} (after {self.request.retries} retries)")


def _run_stage(stage: Stage, trace_pk: int, run_id: str, work: Callable[[Trace], None]) -> None:
    if not services.trace_claim_stage(trace_pk=trace_pk, run_id=run_id, stage=stage):
        raise Ignore()  # superseded run or finished trace: stop this chain quietly
    trace = Trace.objects.get(pk=trace_pk)
    started = time.perf_counter()
    try:
        work(trace)
    except PERMANENT_ERRORS as exc:
        services.trace_fail(trace_pk=trace_pk, run_id=run_id, stage=stage, reason=str(exc))
        raise Ignore() from exc
    services.trace_record_timing(trace_pk=trace_pk, stage=stage, seconds=time.perf_counter() - started)


@shared_task(base=StageTask, bind=True, stage=Stage.LOAD)
def stage_load(self, trace_pk: int, run_id: str) -> None:
    _run_stage(Stage.LOAD, trace_pk, run_id, lambda t: pipeline.load_stage(t, pipeline.artifact_store()))


@shared_task(base=StageTask, bind=True, stage=Stage.SAE_DECODE)
def stage_sae_decode(self, trace_pk: int, run_id: str) -> None:
    _run_stage(Stage.SAE_DECODE, trace_pk, run_id,
               lambda t: pipeline.sae_decode_stage(t, pipeline.artifact_store(), pipeline.sae_service()))


@shared_task(base=StageTask, bind=True, stage=Stage.ATTRIBUTE)
def stage_attribute(self, trace_pk: int, run_id: str) -> None:
    _run_stage(Stage.ATTRIBUTE, trace_pk, run_id,
               lambda t: pipeline.attribute_stage(t, pipeline.artifact_store(), pipeline.sae_service()))


@shared_task(base=StageTask, bind=True, stage=Stage.BUILD)
def stage_build(self, trace_pk: int, run_id: str) -> None:
    _run_stage(Stage.BUILD, trace_pk, run_id, lambda t: pipeline.build_stage(t, pipeline.artifact_store()))


@shared_task(base=StageTask, bind=True, stage=Stage.PERSIST)
def stage_persist(self, trace_pk: int, run_id: str) -> None:
    _run_stage(Stage.PERSIST, trace_pk, run_id,
               lambda t: pipeline.persist_stage(t, pipeline.artifact_store(), run_id))


def explain_chain(trace_pk: int, run_id: str):
    """The whole explanation of one run; immutable signatures, so each stage gets only the ids."""
    stages = (stage_load, stage_sae_decode, stage_attribute, stage_build, stage_persist)
    return chain(*(task.si(trace_pk, run_id) for task in stages))


@shared_task(acks_late=True)
def sweep_outbox() -> int:
    return services.outbox_sweep()


@shared_task(acks_late=True)
def reconcile_stuck() -> int:
    return len(services.traces_reconcile())


@worker_ready.connect
def _sweep_at_start(sender=None, **kwargs) -> None:
    """Publish anything committed but never published while no worker was up."""
    try:
        published = services.outbox_sweep(older_than_s=0)
    except Exception:  # noqa: BLE001 - a sweep failure must not stop the worker from starting
        logger.exception("outbox sweep at worker start failed")
        return
    if published:
        logger.info("published %d outbox rows at worker start", published)
