"""POST /ingest: parse → validate → accept → 202, or a 4xx/503 that says why."""
from __future__ import annotations

import redis
import structlog
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from opentelemetry import trace
from rest_framework import serializers, status
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from explainer.audit import key_actor
from explainer.models import Scope, TraceStatus
from hypergraph_site.api.auth import HasScope
from hypergraph_site.api.broker import BrokerUnavailable
from hypergraph_site.api.errors import error_response
from hypergraph_site.api.links import trace_url
from hypergraph_site.api.openapi import api_key_errors, error_docs, error_example

from .admission import Refusal, load_admission, rate_limit
from .observe import ingest_answered, ingest_span
from .openapi import IngestEventSerializer
from .services import TraceConflict, TraceFinished, event_accept
from .validation import EventInvalid, parse_body, validate_event


class AcceptedSerializer(serializers.Serializer):
    """What a 202 says: the event is stored, and where to follow the trace."""

    trace_id = serializers.CharField()
    status = serializers.ChoiceField(TraceStatus.values, help_text="`open` until finalized, then `queued`")
    status_url = serializers.URLField(help_text="`GET` it for the trace's progress")


INGEST_RETRY_AFTER = OpenApiParameter(
    "Retry-After", int, OpenApiParameter.HEADER, response=[429, 503],
    description="Seconds to wait before retrying: until the tenant's rate allows a request, or `RETRY_AFTER_S`")

EVENT_EXAMPLES = [
    OpenApiExample("completion", request_only=True, value={
        "trace_id": "req-42", "event_type": "completion", "granularity": "sentence",
        "payload": {"model": "gpt2", "prompt": "Explain mitosis.", "text": " Cells divide.",
                    "tokens": [" Cells", " divide", "."]}}),
    OpenApiExample("inline JSON activations", request_only=True, value={
        "trace_id": "req-42", "event_type": "activations",
        "payload": {"layer": 6, "token_offset": 0, "encoding": "json", "shape": [2, 4],
                    "data": [[0.5, -1.25, 2.0, 0.0], [0.0, 0.25, -0.5, 1.0]]}},
        description="The layer and row width must be a dictionary's (`GET /v1/dictionaries`): the sample "
                    "dictionary's are layer 6, width 384."),
    OpenApiExample("inline float16 activations", request_only=True, value={
        "trace_id": "req-42", "event_type": "activations",
        "payload": {"layer": 6, "encoding": "f16-base64", "shape": [1, 4], "data": "ADgAvQBAAAA="}},
        description="Little-endian float16, row-major, base64-encoded."),
    OpenApiExample("activations in capture shards", request_only=True, value={
        "trace_id": "req-42", "event_type": "activations",
        "payload": {"model_name": "gpt2", "model_hash": "", "layers": [6], "tokens": 3, "d_model": 384,
                    "shards": ["activations:req-42:6:0"], "dropped": 0, "compress": "zstd", "summary": "dense",
                    "hook_point": "resid_post", "convention": "hf_raw"}},
        description="The envelope `ingest.hooks` returns from `CapturePipeline.flush`: the rows are in Redis."),
    OpenApiExample("finalize", request_only=True, value={"trace_id": "req-42", "event_type": "finalize",
                                                          "payload": {}}),
]


class RawJSONParser(BaseParser):
    """Leaves the body unparsed: the view parses it strictly itself, so any malformed body is a 400, never a 500."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        return None


class IngestApi(APIView):
    parser_classes = [RawJSONParser]
    permission_classes = [HasScope]
    required_scope = Scope.TRACES_WRITE

    def dispatch(self, request: HttpRequest, *args, **kwargs) -> HttpResponseBase:
        with ingest_span(request) as span:
            response = super().dispatch(request, *args, **kwargs)
            ingest_answered(span=span, response=response, tenant=self.tenant_slug)
        return response

    # The tenant of an authenticated request, for the metrics' tenant label; "" when authentication did not succeed
    # (asking `request.user` again after a failure would authenticate again).
    tenant_slug = ""

    @extend_schema(
        operation_id="ingest_event",
        summary="Accept one trace event (completion, activations or finalize)",
        description=(
            "Stores the event before answering 202. A trace is `open` until a `finalize` event (or a completion "
            "with `final: true`); it is then explained in the background: follow `status_url`, then fetch the "
            "graph. Sending an identical event again is acknowledged again and does nothing more. The limits in "
            "the request schema are this deployment's (`MAX_TRACE_TOKENS`, `MAX_LAYERS`, `MAX_ACTIVATION_WIDTH`, "
            "`MAX_TEXT_CHARS`); the body may be at most `INGEST_MAX_BODY_BYTES`. Admission comes first, before "
            "anything is stored: each tenant may send `INGEST_RATE_PER_TENANT` requests per second (429 past it), "
            "hold `BP_MAX_QUEUE_TENANT` × `BP_BURST_MULTIPLIER` traces queued or running (a finalize past it is a "
            "429), and while the service is overloaded every event is a 503. Both carry `Retry-After`."),
        request={"application/json": IngestEventSerializer},
        parameters=[INGEST_RETRY_AFTER],
        examples=EVENT_EXAMPLES,
        responses={
            202: OpenApiResponse(AcceptedSerializer, description="Stored; the trace's status and where to follow it",
                                 examples=[OpenApiExample("202", response_only=True, status_codes=[202], value={
                                     "trace_id": "req-42", "status": "open",
                                     "status_url": "http://127.0.0.1:8000/v1/traces/req-42"})]),
            400: error_docs(
                "Not JSON (NaN and Infinity included), a schema violation, an array whose data does not match its "
                "shape or dtype or is out of range, a size over its limit (the message names the setting), a layer "
                "or width the dictionary lacks, rows beyond the completion's tokens, an empty completion. Every "
                "problem found is listed, each with its path.",
                error_example(400, "20000 is greater than the maximum of 16384 (the limit is set by "
                                   "MAX_ACTIVATION_WIDTH)", path="payload.shape[1]", name="over a limit"),
                error_example(400, "'text' is a required property", path="payload", name="schema violation"),
                error_example(400, "body is not valid JSON: NaN and Infinity are not JSON numbers: line 1 column 70 "
                                   "(char 69)", name="not JSON")),
            **api_key_errors(Scope.TRACES_WRITE),
            409: error_docs(
                "The trace was finalized or expired, or this is a second, different completion",
                error_example(409, "trace 'req-42' is queued and accepts no more events", path="trace_id",
                              name="finalized"),
                error_example(409, "trace 'req-42' already has a different completion event; a trace explains "
                                   "one response, so send this one under a new trace id", path="payload",
                              name="second completion")),
            413: error_docs("The body is over `INGEST_MAX_BODY_BYTES`",
                            error_example(413, "body of 40000000 bytes exceeds the limit of 33554432 bytes")),
            429: error_docs(
                "The tenant sends faster than `INGEST_RATE_PER_TENANT`, or this finalize would take it past its "
                "queue cap; nothing was stored, retry after `Retry-After` seconds",
                error_example(429, "this tenant sends more than INGEST_RATE_PER_TENANT (50 requests per second, "
                                   "bursts of 50); retry after Retry-After seconds", name="rate"),
                error_example(429, "this tenant has 300 traces queued or running, its cap (BP_MAX_QUEUE_TENANT × "
                                   "BP_BURST_MULTIPLIER) is 300; finalize it again later", name="queue cap")),
            503: error_docs(
                "Redis or the database is unreachable, or the service is overloaded (backpressure at the drop "
                "level); nothing was stored, retry after `Retry-After` seconds",
                error_example(503, "the queue (Redis) is unreachable; nothing was stored, retry later",
                              name="Redis down"),
                error_example(503, "the database is unreachable; nothing was stored, retry later",
                              name="database down"),
                error_example(503, "the service is overloaded (6012 traces queued or running, BP_MAX_QUEUE_GLOBAL "
                                   "5000); nothing was stored, retry later", name="overloaded")),
        },
    )
    def post(self, request: Request) -> Response:
        tenant = request.user.tenant
        self.tenant_slug = tenant.slug
        try:
            refused = rate_limit(tenant_id=tenant.pk)
        except redis.RedisError:
            return _queue_down()
        if refused:
            return _refusal(refused)
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
        structlog.contextvars.bind_contextvars(trace_id=event.trace_id)
        span = trace.get_current_span()
        span.set_attribute("hypergraph.trace_id", event.trace_id)
        span.set_attribute("hypergraph.event_type", event.event_type)
        try:
            refused = load_admission(tenant_id=tenant.pk, finalizes=event.finalizes)
        except redis.RedisError:
            return _queue_down()
        if refused:
            return _refusal(refused)
        try:
            result = event_accept(tenant=tenant, event=event, actor=key_actor(request.user.key.prefix))
        except EventInvalid as exc:
            return Response({"errors": exc.errors}, status=status.HTTP_400_BAD_REQUEST)
        except BrokerUnavailable:
            return _queue_down()
        except TraceFinished as exc:
            return error_response(409, str(exc), path="trace_id")
        except TraceConflict as exc:
            return error_response(409, str(exc), path="payload")
        return Response(
            {
                "trace_id": result.trace_id,
                "status": result.status,
                "status_url": trace_url(request, result.trace_id),
            },
            status=status.HTTP_202_ACCEPTED,
        )


def _refusal(refused: Refusal) -> Response:
    return error_response(refused.status, refused.message, headers={"Retry-After": str(refused.retry_after_s)})


def _queue_down() -> Response:
    return error_response(503, "the queue (Redis) is unreachable; nothing was stored, retry later",
                          headers={"Retry-After": str(settings.RETRY_AFTER_S)})
