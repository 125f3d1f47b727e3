"""Prometheus families read from the database and Redis when /metrics is scraped, so they are the same whichever
process serves them and need no process to have counted anything: traces by status, dead letters, queue depth,
live workers. Each scrape costs two GROUP BY queries and one Redis pipeline.
"""
from __future__ import annotations

import logging
from typing import Iterator

import redis
from django.conf import settings
from django.db.models import BooleanField, Count, ExpressionWrapper, Q
from kombu.transport.redis import PRIORITY_STEPS, Channel
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .heartbeat import redis_client, workers_alive
from .models import DeadLetter, Trace

logger = logging.getLogger(__name__)

QUEUES = ("default", "gpu")


def queue_keys(queue: str) -> list[str]:
    """The Redis lists kombu keeps for one queue: the name itself for priority 0, `<name>\\x06\\x16<p>` for each other
    priority step (kombu.transport.redis `Channel._q_for_pri`)."""
    return [queue if step == 0 else f"{queue}{Channel.sep}{step}" for step in PRIORITY_STEPS]


def queue_depths() -> dict[str, int]:
    """Messages waiting in each queue (all priorities); raises `redis.RedisError` when Redis is unreachable."""
    pipe = redis_client().pipeline(transaction=False)
    for queue in QUEUES:
        for key in queue_keys(queue):
            pipe.llen(key)
    lengths = iter(pipe.execute())
    return {queue: sum(next(lengths) for _ in PRIORITY_STEPS) for queue in QUEUES}


class ServiceStateCollector(Collector):
    """What the database and Redis say now; registered in the registry /metrics builds for each scrape."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._traces()
        yield self._dead_letters()
        yield from self._redis_state()

    def _traces(self) -> Iterator[GaugeMetricFamily]:
        by_tenant = settings.METRICS_TENANT_LABEL
        labels = ["status", "granularity", "tenant"] if by_tenant else ["status", "granularity"]
        family = GaugeMetricFamily("hypergraph_traces", "Traces by status and granularity now", labels=labels)
        fields = ["status", "granularity", "tenant__slug"] if by_tenant else ["status", "granularity"]
        for row in Trace.objects.values(*fields).annotate(n=Count("pk")).order_by():
            family.add_metric([row[f] for f in fields], row["n"])
        yield family

    def _dead_letters(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "hypergraph_dead_letters", "Dead letters by the stage that failed and their state (pending: neither "
            "replayed nor quarantined)", labels=["stage", "state"])
        replayed = ExpressionWrapper(Q(replayed_at__isnull=False), output_field=BooleanField())
        rows = DeadLetter.objects.annotate(replayed=replayed).values("stage", "quarantined", "replayed")
        counts: dict[tuple[str, str], int] = {}
        for row in rows.annotate(n=Count("pk")).order_by():
            key = (row["stage"] or "unknown",
                   "quarantined" if row["quarantined"] else "replayed" if row["replayed"] else "pending")
            counts[key] = counts.get(key, 0) + row["n"]
        for labels, n in sorted(counts.items()):
            family.add_metric(list(labels), n)
        return family

    def _redis_state(self) -> Iterator[GaugeMetricFamily]:
        try:
            depths, alive = queue_depths(), workers_alive()
        except redis.RedisError as exc:
            logger.warning("metrics: Redis unreachable, queue depth and workers left out: %s", exc)
            return
        depth = GaugeMetricFamily("hypergraph_queue_depth", "Stage messages waiting in a Celery queue (Redis LLEN, "
                                  "all priorities)", labels=["queue"])
        for queue, n in depths.items():
            depth.add_metric([queue], n)
        yield depth
        yield GaugeMetricFamily("hypergraph_workers_alive", "Workers whose heartbeat is within "
                                "READYZ_WORKER_MAX_AGE_S", value=len(alive))
