"""Liveness, readiness and metrics endpoints (no authentication, described in the OpenAPI schema)."""
from __future__ import annotations

from django.db import connection
from django.http import HttpResponse
from django_prometheus.exports import ExportToDjangoView
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .broker import BrokerUnavailable, broker_check


LiveSerializer = inline_serializer("Live", {"status": serializers.ChoiceField(["ok"])})
ReadinessSerializer = inline_serializer("Readiness", {
    "status": serializers.ChoiceField(["ready", "unavailable"]),
    "checks": inline_serializer("ReadinessChecks", {
        "database": serializers.CharField(help_text="`ok`, or `error: ` and why"),
        "redis": serializers.CharField(help_text="`ok`, or `error: ` and why"),
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
    @extend_schema(operation_id="readyz", summary="Database and Redis are reachable",
                   responses={200: ReadinessSerializer,
                              503: OpenApiResponse(ReadinessSerializer, description="A dependency is down")})
    def get(self, request: Request) -> Response:
        checks = {"database": "ok", "redis": "ok"}
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception as exc:  # noqa: BLE001 - any database error means not ready
            checks["database"] = f"error: {exc}"
        try:
            broker_check()
        except BrokerUnavailable as exc:
            checks["redis"] = f"error: {exc}"
        ready = all(v == "ok" for v in checks.values())
        return Response({"status": "ready" if ready else "unavailable", "checks": checks},
                        status=200 if ready else 503)


class MetricsApi(OpenApi):
    @extend_schema(operation_id="metrics", summary="Prometheus metrics (text exposition format)",
                   responses={(200, "text/plain"): OpenApiTypes.STR})
    def get(self, request: Request) -> HttpResponse:
        return ExportToDjangoView(request._request)
