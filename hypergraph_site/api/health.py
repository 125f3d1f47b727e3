"""Liveness, readiness and metrics endpoints (no authentication, described in the OpenAPI schema)."""
from __future__ import annotations

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from rest_framework.views import APIView

from explainer.heartbeat import workers_alive
from explainer.metrics_export import samples_registry
from explainer.service_metrics import ServiceStateCollector

from .broker import BrokerUnavailable, broker_check


LiveSerializer = inline_serializer("Live", {"status": serializers.ChoiceField(["ok"])})
ReadinessSerializer = inline_serializer("Readiness", {
    "status": serializers.ChoiceField(["ready", "unavailable"]),
    "checks": inline_serializer("ReadinessChecks", {
        "database": serializers.CharField(help_text="`ok`, or `error: ` and why"),
        "redis": serializers.CharField(help_text="`ok`, or `error: ` and why"),
        "worker": serializers.CharField(help_text=(
            "`ok` when a worker's heartbeat was seen within `READYZ_WORKER_MAX_AGE_S`, else `error: ` and why. "
            "Reported only: without a worker events are still accepted and wait in the queue, so it does not make "
            "this process unready")),
    }),
})


class OpenApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []


class HealthzApi(OpenApi):
    @extend_schema(operation_id="healthz", summary="The process is alive", responses={200: LiveSerializer})
    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


class ReadyzApi(OpenApi):
    @extend_schema(operation_id="readyz", summary="Database and Redis are reachable; is a worker alive?",
                   responses={200: ReadinessSerializer,
                              503: OpenApiResponse(ReadinessSerializer, description="A dependency is down")})
    def get(self, request: Request) -> Response:
        checks = {"database": "ok", "redis": "ok", "worker": "ok"}
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception as exc:  # noqa: BLE001 - any database error means not ready
            checks["database"] = f"error: {exc}"
        try:
            broker_check()
        except BrokerUnavailable as exc:
            checks["redis"] = f"error: {exc}"
        checks["worker"] = _worker_check()
        ready = checks["database"] == "ok" and checks["redis"] == "ok"
        return Response({"status": "ready" if ready else "unavailable", "checks": checks},
                        status=200 if ready else 503)


def _worker_check() -> str:
    max_age = settings.READYZ_WORKER_MAX_AGE_S
    try:
        alive = workers_alive(max_age_s=max_age)
    except redis.RedisError as exc:
        return f"error: cannot read worker heartbeats: {exc}"
    return "ok" if alive else f"error: no worker heartbeat within {max_age:g} s"


class MetricsApi(OpenApi):
    @extend_schema(operation_id="metrics", summary="Prometheus metrics (text exposition format)",
                   description="This process's samples (every process of the host in multiprocess mode, "
                               "`PROMETHEUS_MULTIPROC_DIR`) and what the database and Redis say now: traces by "
                               "status, dead letters, queue depth, live workers.",
                   responses={(200, "text/plain"): OpenApiTypes.STR})
    def get(self, request: Request) -> HttpResponse:
        registry = samples_registry(extra=[ServiceStateCollector()])
        return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
