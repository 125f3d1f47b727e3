"""Reads. Every selector takes `tenant=` first, so another tenant's trace is a 404 by construction."""
from __future__ import annotations

from django.http import Http404

from .models import Explanation, Tenant, Trace


def trace_get(*, tenant: Tenant, trace_id: str) -> Trace:
    trace = Trace.objects.filter(tenant=tenant, trace_id=trace_id).first()
    if trace is None:
        raise Http404(f"trace '{trace_id}' not found")
    return trace


def explanation_get(*, tenant: Tenant, trace_id: str) -> Explanation | None:
    return Explanation.objects.filter(trace__tenant=tenant, trace__trace_id=trace_id).first()


def trace_summary(*, trace: Trace) -> dict:
    explanation = Explanation.objects.filter(trace=trace).only(
        "node_count", "incidence_count", "size_bytes").first()
    return {
        "trace_id": trace.trace_id,
        "status": trace.status,
        "stage": trace.stage,
        "granularity": trace.granularity,
        "model_name": trace.model_name,
        "model_hash": trace.model_hash,
        "finalized": trace.finalized_at is not None,
        "timings": trace.timings,
        "counts": {
            "events": trace.events.count(),
            "nodes": explanation.node_count if explanation else None,
            "incidences": explanation.incidence_count if explanation else None,
            "graph_bytes": explanation.size_bytes if explanation else None,
        },
        "error": trace.error or None,
        "created": trace.created.isoformat(),
        "updated": trace.updated.isoformat(),
    }
