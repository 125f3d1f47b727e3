"""Read API: trace status and the explained graph, scoped to the caller's tenant."""
from __future__ import annotations

from django.urls import reverse
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hypergraph_site.api.auth import HasScope
from hypergraph_site.api.errors import error_response

from .exports import EXPORT_FORMATS, export_graph
from .models import Granularity, Scope, TraceStatus
from .selectors import dictionary_catalog, explanation_get, trace_get, trace_list, trace_summary


class TracePages(CursorPagination):
    """Opaque cursors over newest-first traces: stable while new traces arrive, unlike page numbers."""

    ordering = ("-created", "-id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200


class TraceListApi(APIView):
    permission_classes = [HasScope]
    required_scope = Scope.TRACES_READ

    @extend_schema(
        operation_id="trace_list",
        summary="The tenant's traces, newest first, cursor-paginated",
        parameters=[
            OpenApiParameter("status", str, enum=TraceStatus.values, required=False),
            OpenApiParameter("granularity", str, enum=Granularity.values, required=False),
            OpenApiParameter("model", str, required=False, description="model name, exact"),
            OpenApiParameter("since", OpenApiTypes.DATETIME, required=False, description="created at or after"),
            OpenApiParameter("cursor", str, required=False, description="from a previous page's next/previous"),
            OpenApiParameter("limit", int, required=False, description="page size, at most 200 (default 50)"),
        ],
        responses={200: OpenApiTypes.OBJECT, 400: OpenApiResponse(description="A filter value is not valid")},
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        for name, allowed in (("status", TraceStatus.values), ("granularity", Granularity.values)):
            if params.get(name) and params[name] not in allowed:
                return error_response(400, f"unknown {name} '{params[name]}'; choose one of {allowed}", path=name)
        since = None
        if params.get("since"):
            since = parse_datetime(params["since"])
            if since is None:
                return error_response(400, f"since '{params['since']}' is not an ISO 8601 date-time", path="since")
        traces = trace_list(tenant=request.user.tenant, status=params.get("status"),
                            granularity=params.get("granularity"), model=params.get("model"), since=since)
        pages = TracePages()
        page = pages.paginate_queryset(traces, request, view=self)
        return pages.get_paginated_response([self._item(request, trace) for trace in page])

    @staticmethod
    def _item(request: Request, trace) -> dict:
        return {
            "trace_id": trace.trace_id, "status": trace.status, "stage": trace.stage,
            "granularity": trace.granularity, "model_name": trace.model_name,
            "nodes": trace.node_count, "incidences": trace.incidence_count, "error": trace.error or None,
            "created": trace.created.isoformat(),
            "finished": trace.finished_at.isoformat() if trace.finished_at else None,
            "url": request.build_absolute_uri(reverse("trace-detail", args=[trace.trace_id])),
        }


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
                   409: OpenApiResponse(description="Trace failed, was canceled or expired"),
                   404: OpenApiResponse(description="No such trace")},
    )
    def get(self, request: Request, trace_id: str) -> Response:
        fmt = request.query_params.get("format", "hif-1")
        if fmt not in EXPORT_FORMATS:
            return error_response(400, f"unknown format '{fmt}'; choose one of {sorted(EXPORT_FORMATS)}",
                                  path="format")
        trace = trace_get(tenant=request.user.tenant, trace_id=trace_id)
        explanation = explanation_get(tenant=request.user.tenant, trace_id=trace_id)
        if trace.status in (TraceStatus.FAILED, TraceStatus.CANCELED, TraceStatus.EXPIRED):
            return error_response(409, f"trace is {trace.status}: {trace.error or 'no graph'}")
        if trace.status != TraceStatus.COMPLETE or explanation is None:
            body = {"trace_id": trace.trace_id, "status": trace.status, "error": trace.error or None,
                    "status_url": request.build_absolute_uri(reverse("trace-detail", args=[trace.trace_id]))}
            return Response(body, status=status.HTTP_202_ACCEPTED)
        return Response(export_graph(trace=trace, document=explanation.document, fmt=fmt))


class DictionaryListApi(APIView):
    permission_classes = [HasScope]
    required_scope = Scope.TRACES_READ

    @extend_schema(operation_id="dictionary_list",
                   summary="What the service can decode: the dictionary set, its layers, widths and architectures",
                   responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        catalog = dictionary_catalog()
        layers = [{"layer": layer, "readable": info is not None, **(vars(info) if info else {})}
                  for layer, info in sorted(catalog.layers.items())]
        return Response({"dictionaries": [{"name": catalog.name, "layers": layers}]})
