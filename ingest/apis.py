"""POST /ingest: parse → validate → accept → 202, or a 4xx/503 that says why."""
from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from explainer.models import Scope
from hypergraph_site.api.auth import HasScope
from hypergraph_site.api.broker import BrokerUnavailable
from hypergraph_site.api.errors import error_response

from .services import TraceConflict, TraceFinished, event_accept
from .validation import EventInvalid, parse_body, validate_event

ErrorSerializer = inline_serializer(
    "Errors",
    {"errors": serializers.ListField(child=inline_serializer("Error", {
        "path": serializers.CharField(), "message": serializers.CharField()}))},
)
AcceptedSerializer = inline_serializer(
    "Accepted",
    {"trace_id": serializers.CharField(), "status": serializers.CharField(), "status_url": serializers.CharField()},
)


class RawJSONParser(BaseParser):
    """Leaves the body unparsed: the view parses it strictly itself, so any malformed body is a 400, never a 500."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        return None


class IngestApi(APIView):
    parser_classes = [RawJSONParser]
    permission_classes = [HasScope]
    required_scope = Scope.TRACES_WRITE

    @extend_schema(
        operation_id="ingest_event",
        summary="Accept one trace event (completion, activations or finalize)",
        request=OpenApiTypes.OBJECT,
        responses={
            202: AcceptedSerializer,
            400: OpenApiResponse(ErrorSerializer, description="Not JSON, schema violation, bad array, a size over "
                                                               "its limit, a layer or width the dictionary lacks"),
            401: OpenApiResponse(ErrorSerializer, description="No or unknown API key"),
            403: OpenApiResponse(ErrorSerializer, description="Key lacks traces:write"),
            409: OpenApiResponse(ErrorSerializer, description="Trace already finalized or expired, or a second, "
                                                               "different completion"),
            413: OpenApiResponse(ErrorSerializer, description="Body over INGEST_MAX_BODY_BYTES"),
            503: OpenApiResponse(ErrorSerializer, description="Redis or the database unreachable; nothing was "
                                                               "stored, retry after Retry-After"),
        },
        examples=[OpenApiExample("finalize", value={"trace_id": "t-1", "event_type": "finalize", "payload": {}})],
    )
    def post(self, request: Request) -> Response:
        limit = settings.INGEST_MAX_BODY_BYTES
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
        if declared > limit:
            return error_response(413, f"body of {declared} bytes exceeds the limit of {limit} bytes")
        body = request.body
        if len(body) > limit:
            return error_response(413, f"body of {len(body)} bytes exceeds the limit of {limit} bytes")
        try:
            event = validate_event(parse_body(body))
        except EventInvalid as exc:
            return Response({"errors": exc.errors}, status=status.HTTP_400_BAD_REQUEST)
        try:
            result = event_accept(tenant=request.user.tenant, event=event)
        except EventInvalid as exc:
            return Response({"errors": exc.errors}, status=status.HTTP_400_BAD_REQUEST)
        except BrokerUnavailable:
            return error_response(503, "the queue (Redis) is unreachable; nothing was stored, retry later",
                                  headers={"Retry-After": str(settings.RETRY_AFTER_S)})
        except TraceFinished as exc:
            return error_response(409, str(exc), path="trace_id")
        except TraceConflict as exc:
            return error_response(409, str(exc), path="payload")
        trace = result.trace
        return Response(
            {
                "trace_id": trace.trace_id,
                "status": trace.status,
                "status_url": request.build_absolute_uri(reverse("trace-detail", args=[trace.trace_id])),
            },
            status=status.HTTP_202_ACCEPTED,
        )
