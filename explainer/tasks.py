"""Thin Celery wrappers: each stage task runs one pipeline function through `runner.run_stage`.

Tasks never chain each other through Celery: a finished stage advances the trace row and publishes the next stage
(`services.stage_publish`), so the database always says what is due and the sweeper can re-send anything lost.
"""
from __future__ import annotations

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown

from . import pipeline, services
from .models import Stage, Trace
from .runner import run_stage
from .sweeper import Sweeper

STAGE_TASK_OPTIONS = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


@shared_task(name=services.STAGE_TASKS[Stage.LOAD], **STAGE_TASK_OPTIONS)
def stage_load(trace_pk: int, run_id: str) -> None:
    run_stage(Stage.LOAD, trace_pk, run_id, lambda t: pipeline.load_stage(t, pipeline.artifact_store()))


@shared_task(name=services.STAGE_TASKS[Stage.SAE_DECODE], **STAGE_TASK_OPTIONS)
def stage_sae_decode(trace_pk: int, run_id: str) -> None:
    run_stage(Stage.SAE_DECODE, trace_pk, run_id,
              lambda t: pipeline.sae_decode_stage(t, pipeline.artifact_store(), pipeline.sae_service()))


@shared_task(name=services.STAGE_TASKS[Stage.ATTRIBUTE], **STAGE_TASK_OPTIONS)
def stage_attribute(trace_pk: int, run_id: str) -> None:
    run_stage(Stage.ATTRIBUTE, trace_pk, run_id,
              lambda t: pipeline.attribute_stage(t, pipeline.artifact_store(), pipeline.sae_service()))


@shared_task(name=services.STAGE_TASKS[Stage.BUILD], **STAGE_TASK_OPTIONS)
def stage_build(trace_pk: int, run_id: str) -> None:
    run_stage(Stage.BUILD, trace_pk, run_id, lambda t: pipeline.build_stage(t, pipeline.artifact_store()))


@shared_task(name=services.STAGE_TASKS[Stage.PERSIST], **STAGE_TASK_OPTIONS)
def stage_persist(trace_pk: int, run_id: str) -> None:
    def finish(trace: Trace, owner: str, graph: pipeline.StoredGraph, seconds: float) -> bool:
        return pipeline.persist_finish(trace, pipeline.artifact_store(), owner, graph, seconds)

    run_stage(Stage.PERSIST, trace_pk, run_id, lambda t: pipeline.persist_stage(t, pipeline.artifact_store()),
              finish=finish)


_sweeper: Sweeper | None = None


@worker_ready.connect
def _start_sweeper(sender=None, **kwargs) -> None:
    """Every worker sweeps (one at a time, under a lock): first now, for whatever was lost while none ran."""
    global _sweeper
    _sweeper = Sweeper()
    _sweeper.start()


@worker_shutdown.connect
def _stop_sweeper(sender=None, **kwargs) -> None:
    if _sweeper is not None:
        _sweeper.stop()
