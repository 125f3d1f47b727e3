"""Read API: trace status and the explained graph, scoped to the caller's tenant."""
from __future__ import annotations

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ingest.auth import HasScope
from ingest.errors import error_response

from .exports import EXPORT_FORMATS, export_graph
from .models import Scope, TraceStatus
from .selectors import explanation_get, trace_get, trace_summary


class TraceDetailApi(APIView):
    permission_classes = [HasScope]
    required_scope = Scope.TRACES_READ

    @extend_schema(operation_id="trace_detail", summary="Status, granularity, timings, counts and error of a trace",
                   responses={200: OpenApiTypes.OBJECT, 404: OpenApiResponse(description="No such trace")})
    def get(self, request: Request, trace_id: str) -> Response:
        trace = trace_get(tenant=request.user.tenant, trace_id=trace_id)
        return Response(trace_summary(trace=trace))


class TraceGraphApi(APIView):
    permission_classes = [HasScope]
    required_scope = Scope.TRACES_READ

    @extend_schema(
        operation_id="trace_graph",
        summary="The explained hypergraph (HIF v1, or an export format)",
        parameters=[OpenApiParameter("format", str, enum=sorted(EXPORT_FORMATS), required=False,
                                     description="hif-1 (default), hif-standard or neuronpedia")],
        responses={200: OpenApiTypes.OBJECT, 202: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT,
                   409: OpenApiResponse(description="Trace failed or was canceled"),
                   404: OpenApiResponse(description="No such trace")},
    )
    def get(self, request: Request, trace_id: str) -> Response:
        fmt = request.query_params.get("format", "hif-1")
        if fmt not in EXPORT_FORMATS:
            return error_response(400, f"unknown format '{fmt}'; choose one of {sorted(EXPORT_FORMATS)}",
                                  path="format")
        trace = trace_get(tenant=request.user.tenant, trace_id=trace_id)
        explanation = explanation_get(tenant=request.user.tenant, trace_id=trace_id)
        if trace.status in (TraceStatus.FAILED, TraceStatus.CANCELED):
            return error_response(409, f"trace is {trace.status}: {trace.error or 'no graph'}")
        if trace.status != TraceStatus.COMPLETE or explanation is None:
            body = {"trace_id": trace.trace_id, "status": trace.status, "error": trace.error or None,
                    "status_url": request.build_absolute_uri(reverse("trace-detail", args=[trace.trace_id]))}
            return Response(body, status=status.HTTP_202_ACCEPTED)
        return Response(export_graph(trace=trace, document=explanation.document, fmt=fmt))
