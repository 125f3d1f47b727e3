"""The Celery app and its queue routing.

Two queues: `default` for CPU stages and `gpu` for SAE decode. A `-Q gpu --pool solo` worker takes only decode work
(CUDA does not survive fork); a CPU-only deployment runs one worker on both queues. There is no beat schedule: the
sweeper that heals lost work runs inside every worker (`explainer.sweeper`).
"""
import os

from celery import Celery
from celery.signals import worker_init, worker_process_shutdown, worker_shutdown
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hypergraph_site.settings")

app = Celery("hypergraph_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_queues=(Queue("default"), Queue("gpu")),
    task_default_queue="default",
    task_routes={"explainer.tasks.stage_sae_decode": {"queue": "gpu"}},
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    # A worker keeps retrying the broker instead of exiting when Redis restarts.
    broker_connection_max_retries=None,
)
app.autodiscover_tasks(["explainer"])


@worker_init.connect
def _configure_tracing(**kwargs) -> None:
    """Before the pool starts: prefork children inherit the provider (the SDK re-creates its export thread after a
    fork)."""
    from hypergraph_site.tracing import tracing_configure

    tracing_configure(role="worker")


@worker_process_shutdown.connect
@worker_shutdown.connect
def _flush_spans(**kwargs) -> None:
    from hypergraph_site.tracing import tracing_flush

    tracing_flush()
