"""The admin's graph pages: the interactive view of a trace's hypergraph, its data, feature notes and downloads.

Each function receives a trace that `TraceAdmin.get_object` already fetched through the staff user's tenant scope,
so these views never see another tenant's trace; they are reached with the admin's session login, not API keys.
Each view of a graph (the page, its document, a download) is audited with the staff user's name.
"""
from __future__ import annotations

import json

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import content_disposition_header

from .audit import admin_actor, audit_record
from .exports import EXPORT_FORMATS, export_graph
from .feature_notes import feature_notes
from .graph_documents import GRAPH_READ_ERRORS, graph_bytes, graph_load
from .object_store import StorageUnavailable
from .models import Explanation, Trace, TraceStatus

DOWNLOAD_ORDER = ("hif-1", "hif-standard", "neuronpedia")


def download_links(trace: Trace) -> list[dict[str, str]]:
    """`[{"format", "url"}]` for the three download formats, in the order people reach for them."""
    base = reverse("admin:explainer_trace_download", args=[trace.pk])
    return [{"format": fmt, "url": f"{base}?format={fmt}"} for fmt in DOWNLOAD_ORDER]


def graph_page(request: HttpRequest, *, trace: Trace, context: dict) -> TemplateResponse:
    """The page shell; the drawing fetches the document itself, so the page answers at once at any graph size."""
    _audit_view(request, trace, "admin.graph_viewed")
    counts = Explanation.objects.filter(trace=trace).values("node_count", "incidence_count", "size_bytes",
                                                            "meta").first()
    return TemplateResponse(request, "admin/explainer/trace/graph.html", {
        **context,
        "complete": trace.status == TraceStatus.COMPLETE and counts is not None,
        "counts": counts,
        "meta": (counts or {}).get("meta") or {},
        "downloads": download_links(trace),
        "document_url": reverse("admin:explainer_trace_graph_document", args=[trace.pk]),
        "features_url": reverse("admin:explainer_trace_graph_features", args=[trace.pk]),
        "change_url": reverse("admin:explainer_trace_change", args=[trace.pk]),
        "concepts": concept_row(trace.concepts),
    })


def concept_row(record: dict) -> dict:
    """The prompt's concepts (text order, each with its own drop) and the kept groups with their members' texts,
    as the graph page's concept row shows them; empty when the trace has none."""
    if not record.get("concepts"):
        return {}
    text = {c["id"]: c["text"] for c in record["concepts"]}
    return {
        "concepts": [{**c, "drop": record["drops"].get(c["id"])} for c in record["concepts"]],
        "groups": [{"ids": " ".join(e["members"]), "texts": " + ".join(text[m] for m in e["members"]),
                    "synergy": e["synergy"], "p_group": e["p_group"]} for e in record["edges"]],
        "calls": record["calls"], "stopped": record["stopped"],
    }


def graph_document(request: HttpRequest, *, trace: Trace) -> HttpResponse:
    """The stored HIF v1 document as stored (no decode and re-encode of megabytes of JSON), once its hash matched."""
    _audit_view(request, trace, "admin.graph_document_read")
    explanation = _explanation(trace)
    if explanation is None:
        return JsonResponse({"error": f"trace is {trace.status}; it has no graph"}, status=409)
    try:
        text = graph_bytes(explanation=explanation).json
    except GRAPH_READ_ERRORS as exc:
        return _unreadable(exc)
    return HttpResponse(text, content_type="application/json")


def graph_features(request: HttpRequest, *, trace: Trace) -> JsonResponse:
    """Labels, layers, indices and top contexts of the features named by `?id=` (repeatable)."""
    dictionary = Explanation.objects.filter(trace=trace).values_list("meta__sae_dictionary", flat=True).first()
    if dictionary is None:
        return JsonResponse({"error": f"trace is {trace.status}; it has no graph"}, status=409)
    notes = feature_notes(dict_root=settings.DICT_ROOT, dictionary=str(dictionary),
                          feature_ids=request.GET.getlist("id"))
    return JsonResponse({"features": notes})


def graph_download(request: HttpRequest, *, trace: Trace) -> HttpResponse:
    """The graph as an attachment in `?format=` (hif-1, hif-standard or neuronpedia), like the API's graph read."""
    fmt = request.GET.get("format", "hif-1")
    if fmt not in EXPORT_FORMATS:
        return JsonResponse({"error": f"unknown format '{fmt}'; choose one of {sorted(EXPORT_FORMATS)}"},
                            status=400)
    _audit_view(request, trace, "admin.graph_downloaded", {"format": fmt})
    explanation = _explanation(trace)
    if explanation is None:
        return JsonResponse({"error": f"trace is {trace.status}; it has no graph"}, status=409)
    try:
        if fmt == "hif-1":
            text = graph_bytes(explanation=explanation).json
        else:
            text = json.dumps(export_graph(trace=trace, document=graph_load(explanation=explanation),
                                           fmt=fmt))
    except GRAPH_READ_ERRORS as exc:
        return _unreadable(exc)
    response = HttpResponse(text, content_type="application/json")
    response["Content-Disposition"] = content_disposition_header(True, f"{trace.trace_id}.{fmt}.json")
    return response


def _audit_view(request: HttpRequest, trace: Trace, action: str, details: dict | None = None) -> None:
    audit_record(action=action, actor=admin_actor(request.user.get_username()), tenant=trace.tenant,
                 target=trace.trace_id, details=details)


def _explanation(trace: Trace) -> Explanation | None:
    if trace.status != TraceStatus.COMPLETE:
        return None
    return Explanation.objects.filter(trace=trace).first()


def _unreadable(exc: Exception) -> JsonResponse:
    """The graph could not be read (store down, object gone or corrupt): said plainly, never served as valid."""
    return JsonResponse({"error": str(exc)}, status=503 if isinstance(exc, StorageUnavailable) else 500)
