"""Trace API: status, the explained graph and deletion, scoped to the caller's tenant."""
from __future__ import annotations

import redis
from django.conf import settings
from django.http import HttpResponse
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (OpenApiExample, OpenApiParameter, OpenApiResponse, PolymorphicProxySerializer,
                                   extend_schema, inline_serializer)
from rest_framework import serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

import hif
from hypergraph_site.api.auth import HasScope
from hypergraph_site.api.errors import error_response
from hypergraph_site.api.links import trace_url
from hypergraph_site.api.openapi import RETRY_AFTER, api_key_errors, error_docs, error_example

from .exports import EXPORT_FORMATS, GRAPH_VIEWS, export_graph
from .graph_documents import GraphBytes, GraphCorrupt, graph_bytes, graph_load
from .backpressure import ACTIONS
from .models import Granularity, Scope, Stage, TraceStatus
from .object_store import ObjectMissing, StorageUnavailable
from .selectors import dictionary_catalog, explanation_get, trace_get, trace_list, trace_summary
from .services import trace_delete

# --- What the answers look like (OpenAPI only: the views build plain dicts) ------------------------------------------


class TraceFieldsSerializer(serializers.Serializer):
    """What every view of a trace says about it."""

    trace_id = serializers.CharField()
    status = serializers.ChoiceField(TraceStatus.values)
    stage = serializers.ChoiceField(Stage.values, allow_blank=True,
                                    help_text="The stage due or running; empty until finalized")
    granularity = serializers.ChoiceField(Granularity.values)
    model_name = serializers.CharField(allow_blank=True)


class TraceItemSerializer(TraceFieldsSerializer):
    nodes = serializers.IntegerField(allow_null=True, help_text="Nodes of the graph; null until complete")
    incidences = serializers.IntegerField(allow_null=True, help_text="Incidences of the graph; null until complete")
    error = serializers.CharField(allow_null=True, help_text="Why the trace failed, expired or was shed")
    created = serializers.DateTimeField()
    finished = serializers.DateTimeField(allow_null=True)
    url = serializers.URLField(help_text="The trace's own status URL")


class TracePageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True, help_text="The next (older) page; null on the last")
    previous = serializers.URLField(allow_null=True, help_text="The previous (newer) page; null on the first")
    results = TraceItemSerializer(many=True)


class TraceCountsSerializer(serializers.Serializer):
    events = serializers.IntegerField(help_text="Events received")
    nodes = serializers.IntegerField(allow_null=True)
    incidences = serializers.IntegerField(allow_null=True)
    graph_bytes = serializers.IntegerField(allow_null=True, help_text="Size of the stored HIF document")


class TraceVerificationSerializer(serializers.Serializer):
    """What attribution valued and, through the shadow model, how the strongest incidences held up under ablation."""

    value = serializers.ChoiceField(("model", "logit", "cosine"), help_text=(
        "model: through every later layer of SHADOW_MODEL; logit: the residual read through the final norm and "
        "unembedding; cosine: agreement with the residual (no unembedding)"))
    shadow_model = serializers.CharField(allow_null=True, help_text="The shadow model used; null when none was")
    shadow_skipped = serializers.CharField(allow_null=True, help_text="Why the shadow model was not used")
    attribution_note = serializers.CharField(required=False, allow_null=True,
                                             help_text="Windows the budget left to saliency, if any")
    verifier = serializers.CharField(required=False, help_text="`ablation`")
    top_k = serializers.IntegerField(required=False, help_text="VERIFY_TOP_K: incidences to check")
    checked = serializers.IntegerField(required=False, help_text="Incidences ablated")
    verified = serializers.IntegerField(required=False, help_text=(
        "Checked incidences whose target logit moved by at least min_drop in the predicted direction"))
    budget_exhausted = serializers.IntegerField(required=False, help_text="Incidences VERIFY_BUDGET_MS left unchecked")
    spearman = serializers.FloatField(required=False, allow_null=True,
                                      help_text="Rank correlation of predicted and observed effects")
    top8_drop = serializers.FloatField(required=False, allow_null=True, help_text=(
        "Mean drop of a window's target logit when its 8 strongest predicted features are ablated together"))
    random8_drop = serializers.FloatField(required=False, allow_null=True,
                                          help_text="The same for 8 random active features of the same layers")
    drop_ratio = serializers.FloatField(required=False, allow_null=True, help_text="top8_drop / random8_drop")
    compared_windows = serializers.IntegerField(required=False)
    min_drop = serializers.FloatField(required=False, help_text="VERIFY_MIN_DROP (logits)")
    seed = serializers.IntegerField(required=False)
    elapsed_ms = serializers.FloatField(required=False)


class TraceSummarySerializer(TraceFieldsSerializer):
    """`explainer.selectors.trace_summary`: where a trace stands."""

    model_hash = serializers.CharField(allow_blank=True)
    finalized = serializers.BooleanField()
    timings = serializers.DictField(child=serializers.FloatField(), help_text="Seconds of each finished stage")
    counts = TraceCountsSerializer()
    error = serializers.CharField(allow_null=True, help_text="Why the trace failed, expired or was shed")
    verification = TraceVerificationSerializer(allow_null=True, help_text="Null until the attribute stage ran")
    degraded = serializers.ListField(child=serializers.ChoiceField(ACTIONS), help_text=(
        "The backpressure actions this run's work was degraded by (README \"Backpressure and admission\"), in "
        "ladder order; `drop` when the trace was shed. Empty when it ran in full or is not started yet"))
    created = serializers.DateTimeField()
    updated = serializers.DateTimeField()


class GraphPendingSerializer(serializers.Serializer):
    """The graph is not there yet: the trace is open, queued or running."""

    trace_id = serializers.CharField()
    status = serializers.ChoiceField(TraceStatus.values)
    error = serializers.CharField(allow_null=True)
    status_url = serializers.URLField()


HIF_NODE_TYPES = ("sae_feature", "input_token", "output_token", "circuit_supernode")


class HifNodeSerializer(serializers.Serializer):
    id = serializers.CharField()
    type = serializers.ChoiceField(HIF_NODE_TYPES)
    label = serializers.CharField(allow_blank=True)
    layer = serializers.IntegerField(required=False, help_text="SAE features")
    position = serializers.IntegerField(required=False, help_text="Tokens")
    activation_strength = serializers.FloatField(required=False)
    attributes = serializers.DictField(required=False, help_text="e.g. feature_index; a supernode's members")


class HifIncidenceSerializer(serializers.Serializer):
    id = serializers.CharField()
    node_ids = serializers.ListField(child=serializers.CharField(), min_length=2,
                                     help_text="The features (or supernode) and the tokens they explain")
    weight = serializers.FloatField(min_value=0, max_value=1)
    metadata = serializers.DictField(help_text="type, method, window")
    attributes = serializers.DictField(required=False, help_text=(
        "effect (signed, predicted), value (model, logit, cosine or activation); on incidences checked by ablation "
        "verifier (ablation or budget_exhausted), observed_effect, observed_prob_change and verified"))


HifDocumentSerializer = inline_serializer("HifDocument", {
    "network-type": serializers.CharField(help_text="`directed`"),
    "meta": serializers.DictField(help_text="version (hif-1), model_name, model_hash, sae_dictionary, granularity, "
                                            "created_at, limits"),
    "nodes": HifNodeSerializer(many=True),
    "incidences": HifIncidenceSerializer(many=True),
})
HifStandardSerializer = inline_serializer("HifStandardDocument", {
    "network-type": serializers.CharField(help_text="`directed`"),
    "metadata": serializers.DictField(),
    "nodes": serializers.ListField(child=serializers.DictField(), help_text="{node, attrs}"),
    "edges": serializers.ListField(child=serializers.DictField(), help_text="{edge, weight, attrs}"),
    "incidences": serializers.ListField(child=serializers.DictField(), help_text="{edge, node, direction, attrs}"),
})
NeuronpediaSerializer = inline_serializer("NeuronpediaGraph", {
    "metadata": serializers.DictField(),
    "qParams": serializers.DictField(),
    "nodes": serializers.ListField(child=serializers.DictField()),
    "links": serializers.ListField(child=serializers.DictField()),
})
TraceGraphSerializer = PolymorphicProxySerializer(
    component_name="TraceGraph", serializers=[HifDocumentSerializer, HifStandardSerializer, NeuronpediaSerializer],
    resource_type_field_name=None)


class DictionaryLayerSerializer(serializers.Serializer):
    layer = serializers.IntegerField()
    readable = serializers.BooleanField(help_text="False when the layer's folder cannot be read; the other fields "
                                                  "are then absent")
    d_in = serializers.IntegerField(required=False, help_text="Row width the layer decodes")
    d_sae = serializers.IntegerField(required=False, help_text="Number of features")
    architecture = serializers.CharField(required=False)
    format = serializers.CharField(required=False)
    labelled = serializers.BooleanField(required=False, help_text="Has feature labels")


class DictionarySetSerializer(serializers.Serializer):
    name = serializers.CharField()
    layers = DictionaryLayerSerializer(many=True)


class DictionaryListSerializer(serializers.Serializer):
    dictionaries = DictionarySetSerializer(many=True)


TRACE_ID = OpenApiParameter("trace_id", str, OpenApiParameter.PATH, pattern="^[A-Za-z0-9._:-]+$",
                            description="The trace id the events were sent with")
STORE_DOWN = "the object store or Redis is unreachable; retry later"
NO_SUCH_TRACE = {404: error_docs("No such trace for this key's tenant (another tenant's trace is a 404 too)",
                                 error_example(404, "trace 'req-42' not found"))}


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
            RETRY_AFTER,
        ],
        responses={
            200: OpenApiResponse(TracePageSerializer, description="A page of traces, newest first", examples=[
                OpenApiExample("a page", response_only=True, status_codes=[200], value={
                    "next": "http://127.0.0.1:8000/v1/traces?cursor=cD0yMDI2LTExLTI4", "previous": None,
                    "results": [{"trace_id": "req-42", "status": "complete", "stage": "persist",
                                 "granularity": "sentence", "model_name": "gpt2", "nodes": 8, "incidences": 4,
                                 "error": None, "created": "2026-11-28T08:00:00+00:00",
                                 "finished": "2026-11-28T08:00:02+00:00",
                                 "url": "http://127.0.0.1:8000/v1/traces/req-42"}]})]),
            400: error_docs("A filter value is not valid", error_example(
                400, "unknown status 'done'; choose one of ['open', 'queued', 'running', 'complete', 'failed', "
                     "'canceled', 'expired', 'shed']", path="status")),
            **api_key_errors(Scope.TRACES_READ),
        },
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
            "url": trace_url(request, trace.trace_id),
        }


class TraceDetailApi(APIView):
    permission_classes = [HasScope]

    @property
    def required_scope(self) -> str:
        return Scope.TRACES_DELETE if self.request.method == "DELETE" else Scope.TRACES_READ

    @extend_schema(
        operation_id="trace_detail",
        summary="Status, granularity, timings, counts, error and verification of a trace",
        parameters=[TRACE_ID, RETRY_AFTER],
        responses={
            200: OpenApiResponse(TraceSummarySerializer, description="Where the trace stands", examples=[
                OpenApiExample("complete", response_only=True, status_codes=[200], value={
                    "trace_id": "req-42", "status": "complete", "stage": "persist", "granularity": "sentence",
                    "model_name": "gpt2", "model_hash": "", "finalized": True,
                    "timings": {"load": 0.01, "sae_decode": 0.42, "attribute": 0.31, "build": 0.02, "persist": 0.01},
                    "counts": {"events": 3, "nodes": 8, "incidences": 4, "graph_bytes": 2841}, "error": None,
                    "verification": {
                        "value": "model", "shadow_model": "pydoc-gpt2", "shadow_skipped": None,
                        "attribution_note": None, "verifier": "ablation", "top_k": 16, "checked": 16, "verified": 12,
                        "budget_exhausted": 0, "spearman": 0.81, "top8_drop": 2.4, "random8_drop": 0.3,
                        "drop_ratio": 8.0, "compared_windows": 9, "min_drop": 0.05, "seed": 0, "elapsed_ms": 84.2},
                    "degraded": [],
                    "created": "2026-11-28T08:00:00+00:00", "updated": "2026-11-28T08:00:02+00:00"})]),
            **NO_SUCH_TRACE,
            **api_key_errors(Scope.TRACES_READ),
        },
    )
    def get(self, request: Request, trace_id: str) -> Response:
        trace = trace_get(tenant=request.user.tenant, trace_id=trace_id)
        return Response(trace_summary(trace=trace))

    @extend_schema(
        operation_id="trace_delete",
        summary="Delete a trace everywhere: its rows, events, graph document, stage artifacts and capture shards",
        parameters=[TRACE_ID, RETRY_AFTER],
        responses={
            204: OpenApiResponse(description="Deleted; the trace id may be used again"),
            **NO_SUCH_TRACE,
            **api_key_errors(Scope.TRACES_DELETE),
            503: error_docs("The database, the object store or Redis is unreachable; the trace is kept (nothing "
                            "that says what remains to delete was removed), retry after `Retry-After` seconds",
                            error_example(503, "the database is unreachable; nothing was stored, retry later",
                                          name="database"),
                            error_example(503, STORE_DOWN, name="object store or Redis")),
        },
    )
    def delete(self, request: Request, trace_id: str) -> HttpResponse:
        trace = trace_get(tenant=request.user.tenant, trace_id=trace_id)
        try:
            trace_delete(trace=trace, actor=request.user.key)
        except (StorageUnavailable, redis.RedisError):
            return error_response(503, STORE_DOWN, headers={"Retry-After": str(settings.RETRY_AFTER_S)})
        deleted = HttpResponse(status=status.HTTP_204_NO_CONTENT)
        del deleted["Content-Type"]  # no body, so no media type
        return deleted


class TraceGraphApi(APIView):
    permission_classes = [HasScope]
    required_scope = Scope.TRACES_READ

    @extend_schema(
        operation_id="trace_graph",
        summary="The explained hypergraph (HIF v1, or an export format)",
        parameters=[TRACE_ID, RETRY_AFTER,
                    OpenApiParameter("format", str, enum=sorted(EXPORT_FORMATS), required=False,
                                     description="hif-1 (default), hif-standard or neuronpedia"),
                    OpenApiParameter("view", str, enum=sorted(GRAPH_VIEWS), required=False, description=(
                        "features (default): the graph of SAE features; concepts: the prompt's concepts and the "
                        "groups of them whose joint masking lowers the emitted token's probability more than their "
                        "separate maskings, a HIF-standard document (computed for traces explained through the "
                        "shadow model; otherwise empty, with `metadata.skipped` saying why)"))],
        responses={
            200: OpenApiResponse(TraceGraphSerializer, description=(
                "The graph: a `HifDocument` (`hif-1`, the stored document, described in full by the service's "
                "`hif/schemas/hif_v1.json`), a `HifStandardDocument` (`hif-standard`, the HIF standard's layout) or "
                "a `NeuronpediaGraph` (`neuronpedia`, Anthropic's attribution-graph JSON)")),
            202: OpenApiResponse(GraphPendingSerializer, description="Not explained yet: the trace is open, queued "
                                                                     "or running; ask again later", examples=[
                OpenApiExample("running", response_only=True, status_codes=[202], value={
                    "trace_id": "req-42", "status": "running", "error": None,
                    "status_url": "http://127.0.0.1:8000/v1/traces/req-42"})]),
            400: error_docs("Unknown format or view", error_example(
                400, "unknown format 'graphml'; choose one of ['hif-1', 'hif-standard', 'neuronpedia']",
                path="format")),
            **NO_SUCH_TRACE,
            409: error_docs("No graph will come: the trace failed, was canceled, expired or was shed (until it is "
                            "replayed)", error_example(
                409, "trace is failed: layer 6: the dictionary has width 384, the activations 768")),
            **api_key_errors(Scope.TRACES_READ),
            500: error_docs("The stored document is missing or no longer matches the hash recorded when it was "
                            "written: it is reported, never served", error_example(
                500, "the stored graph of trace 'req-42' does not match its recorded hash; it is not served")),
            503: error_docs("The database or the object store is unreachable; retry after `Retry-After` seconds",
                            error_example(503, "the database is unreachable; nothing was stored, retry later",
                                          name="database"),
                            error_example(503, STORE_DOWN, name="object store")),
        },
    )
    def get(self, request: Request, trace_id: str) -> Response:
        fmt = request.query_params.get("format", "hif-1")
        if fmt not in EXPORT_FORMATS:
            return error_response(400, f"unknown format '{fmt}'; choose one of {sorted(EXPORT_FORMATS)}",
                                  path="format")
        view = request.query_params.get("view", "features")
        if view not in GRAPH_VIEWS:
            return error_response(400, f"unknown view '{view}'; choose one of {sorted(GRAPH_VIEWS)}", path="view")
        trace = trace_get(tenant=request.user.tenant, trace_id=trace_id)
        explanation = explanation_get(tenant=request.user.tenant, trace_id=trace_id)
        if trace.status in (TraceStatus.FAILED, TraceStatus.CANCELED, TraceStatus.EXPIRED, TraceStatus.SHED):
            return error_response(409, f"trace is {trace.status}: {trace.error or 'no graph'}")
        if trace.status != TraceStatus.COMPLETE or explanation is None:
            body = {"trace_id": trace.trace_id, "status": trace.status, "error": trace.error or None,
                    "status_url": trace_url(request, trace.trace_id)}
            return Response(body, status=status.HTTP_202_ACCEPTED)
        if view == "concepts":
            return Response(hif.concepts_document(trace.concepts, {
                "trace_id": trace.trace_id, "model_name": trace.model_name, "model_hash": trace.model_hash}))
        try:
            if fmt != "hif-1":
                return Response(export_graph(trace=trace, document=graph_load(explanation=explanation), fmt=fmt))
            return _document_response(request, graph_bytes(explanation=explanation))
        except StorageUnavailable:
            return error_response(503, STORE_DOWN, headers={"Retry-After": str(settings.RETRY_AFTER_S)})
        except ObjectMissing:
            return error_response(500, f"the stored graph of trace '{trace_id}' is missing; it is not served")
        except GraphCorrupt:
            return error_response(500, f"the stored graph of trace '{trace_id}' does not match its recorded hash; "
                                       f"it is not served")


def _accepts_gzip(request: Request) -> bool:
    """Whether `Accept-Encoding` allows gzip (named, or `*`, with a q above 0)."""
    for part in request.META.get("HTTP_ACCEPT_ENCODING", "").split(","):
        coding, _, params = part.partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            weight = params.replace(" ", "").lower()
            return not weight.startswith("q=") or weight[2:].rstrip("0.") != ""
    return False


def _document_response(request: Request, stored: GraphBytes) -> HttpResponse:
    """The checked HIF v1 document as stored: its gzip as it is when the client takes gzip, else the JSON."""
    if stored.gzipped is not None and _accepts_gzip(request):
        response = HttpResponse(stored.gzipped, content_type="application/json")
        response["Content-Encoding"] = "gzip"
    else:
        response = HttpResponse(stored.json, content_type="application/json")
    response["Vary"] = "Accept-Encoding"
    return response


class DictionaryListApi(APIView):
    permission_classes = [HasScope]
    required_scope = Scope.TRACES_READ

    @extend_schema(
        operation_id="dictionary_list",
        summary="What the service can decode: the dictionary set, its layers, widths and architectures",
        parameters=[RETRY_AFTER],
        responses={
            200: OpenApiResponse(DictionaryListSerializer, description="The configured dictionary set", examples=[
                OpenApiExample("the sample dictionary", response_only=True, status_codes=[200], value={
                    "dictionaries": [{"name": "sample", "layers": [
                        {"layer": 6, "readable": True, "d_in": 384, "d_sae": 4096, "architecture": "topk",
                         "format": "saelens", "labelled": True}]}]})]),
            **api_key_errors(Scope.TRACES_READ),
        },
    )
    def get(self, request: Request) -> Response:
        catalog = dictionary_catalog()
        layers = [{"layer": layer, "readable": info is not None, **(vars(info) if info else {})}
                  for layer, info in sorted(catalog.layers.items())]
        return Response({"dictionaries": [{"name": catalog.name, "layers": layers}]})
