"""The Celery app and its queue routing.

Two queues: `default` for CPU stages and `gpu` for SAE decode. A `-Q gpu --pool solo` worker takes only decode work
(CUDA does not survive fork); a CPU-only deployment runs one worker on both queues.
"""
import os

from celery import Celery
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
    beat_schedule={
        "sweep-outbox": {"task": "explainer.tasks.sweep_outbox", "schedule": 10.0},
        "reconcile": {"task": "explainer.tasks.reconcile_stuck", "schedule": 60.0},
    },
)
app.autodiscover_tasks(["explainer"])
