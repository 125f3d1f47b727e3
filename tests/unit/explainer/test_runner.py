"""A stage run: outages retried in the task, input problems and bugs fail only their trace, the lease kept alive."""
from __future__ import annotations

import time

import pytest
import redis
from django.db import transaction

from explainer import runner, services
from explainer.models import DeadLetter, Stage, Trace, TraceStatus
from explainer.pipeline import PipelineError

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def trace(alice, redis_flush):
    trace = Trace.objects.create(tenant=alice[0], trace_id="t-1")
    with transaction.atomic():
        services.trace_start_run(trace=trace)
    redis_flush.flushdb()
    trace.refresh_from_db()
    return trace


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    monkeypatch.setattr(runner, "BACKOFF_FIRST_S", 0.01)


def run(trace, work, stage=Stage.LOAD, runs_here=lambda stage: False) -> Trace:
    runner.run_chain(stage, trace.pk, str(trace.run_id), {stage: work}, finish=None, runs_here=runs_here)
    return Trace.objects.get(pk=trace.pk)


def test_success_advances_and_publishes_the_next_stage(trace, redis_flush):
    after = run(trace, lambda t: None)
    assert (after.status, after.stage, after.lease_owner) == (TraceStatus.RUNNING, Stage.SAE_DECODE, "")
    assert "load" in after.timings
    assert redis_flush.llen("gpu") == 1  # SAE decode goes to the gpu queue


def test_stages_this_worker_takes_run_in_the_same_task_until_one_it_does_not(trace, redis_flush):
    seen = []
    works = {stage: (lambda t, stage=stage: seen.append((stage, t.lease_owner))) for stage in Stage}
    runner.run_chain(Stage.LOAD, trace.pk, str(trace.run_id), works, finish=None,
                     runs_here=lambda stage: stage != Stage.BUILD)
    after = Trace.objects.get(pk=trace.pk)
    assert [stage for stage, _ in seen] == [Stage.LOAD, Stage.SAE_DECODE, Stage.ATTRIBUTE]
    assert (after.stage, after.lease_owner, after.attempts) == (Stage.BUILD, "", 0)
    assert set(after.timings) == {"load", "sae_decode", "attribute"}
    assert (redis_flush.llen("gpu"), redis_flush.llen("default")) == (0, 1)  # only build was published


def test_the_last_stage_finishes_the_run(trace):
    Trace.objects.filter(pk=trace.pk).update(stage=Stage.PERSIST)
    finished = []
    runner.run_chain(Stage.PERSIST, trace.pk, str(trace.run_id), {Stage.PERSIST: lambda t: "doc"},
                     finish=lambda t, owner, output, seconds: finished.append((output, owner == t.lease_owner)))
    assert finished == [("doc", True)]  # the holder finishes, with the output of the last stage


def test_which_stages_a_worker_runs_itself(settings):
    takes = runner.takes_queue_of(frozenset({"default"}))
    assert takes(Stage.BUILD) and not takes(Stage.SAE_DECODE)  # SAE decode is routed to the gpu queue
    assert runner.takes_queue_of(frozenset({"default", "gpu"}))(Stage.SAE_DECODE)
    settings.STAGE_INLINE = False
    assert not takes(Stage.BUILD)


def test_a_memory_error_fails_only_this_trace(trace):
    def work(t):
        raise MemoryError()

    after = run(trace, work)
    assert after.status == TraceStatus.FAILED and "ran out of memory" in after.error
    assert DeadLetter.objects.filter(trace=trace).count() == 1


def test_an_input_error_fails_at_once_with_its_message(trace):
    def work(t):
        raise PipelineError("layer 6: no activations for positions [3]")

    after = run(trace, work)
    assert after.status == TraceStatus.FAILED and after.error == "layer 6: no activations for positions [3]"


def test_a_bug_fails_the_trace_not_the_worker(trace):
    after = run(trace, lambda t: 1 / 0)
    assert after.status == TraceStatus.FAILED and "internal error in load: ZeroDivisionError" in after.error


def test_transient_errors_are_retried_until_they_pass(trace, redis_flush):
    calls = []

    def work(t):
        calls.append(1)
        if len(calls) < 3:
            raise redis.ConnectionError("Connection refused")

    after = run(trace, work)
    assert len(calls) == 3 and after.stage == Stage.SAE_DECODE


def test_transient_errors_past_the_window_dead_letter_the_trace(trace, settings):
    settings.TASK_RETRY_WINDOW_S = 0.2

    def work(t):
        raise redis.ConnectionError("Connection refused")

    started = time.monotonic()
    after = run(trace, work)
    assert time.monotonic() - started >= 0.2  # the retries span the whole window
    assert after.status == TraceStatus.FAILED and "still failing after retrying" in after.error


def test_a_stage_held_by_another_worker_is_not_run(trace):
    assert services.trace_claim_stage(trace_pk=trace.pk, run_id=trace.run_id, stage=Stage.LOAD, owner="o" * 32)
    calls = []
    after = run(trace, lambda t: calls.append(1))
    assert calls == [] and after.lease_owner == "o" * 32


def test_the_lease_is_renewed_while_the_stage_works(trace, settings):
    settings.STAGE_LEASE_S = 1
    seen = []

    def work(t):
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            time.sleep(0.25)
            seen.append(services.trace_claim_stage(trace_pk=t.pk, run_id=t.run_id, stage=Stage.LOAD,
                                                   owner="thief" + "x" * 27))

    after = run(trace, work)
    assert seen and not any(seen)  # never expired, so never taken over
    assert after.stage == Stage.SAE_DECODE
