"""Traces as the pipeline leaves them, made directly in the database for the admin's tests (no worker needed)."""
from __future__ import annotations

import hashlib
from datetime import timedelta

from django.utils import timezone

import hif
from explainer.graph_documents import graph_store
from explainer.models import DeadLetter, Explanation, StaffTenant, Tenant, Trace, TraceEvent

TIMINGS = {"load": 0.01, "sae_decode": 0.5, "attribute": 0.3, "build": 0.02, "persist": 0.01}
TOKENS = ["Cells", " divide", ".", " Genes", " copy", "."]
FEATURES = (  # id, label: three "Biology:" features group into one supernode, the fourth stays itself
    ("feat_6_1", "Biology: cells"), ("feat_6_9", "Biology: genome"), ("feat_6_17", "Biology: enzymes"),
    ("feat_6_2", "plain feature two"),
)


def small_document() -> dict:
    """A valid HIF v1 document: one supernode, one feature, six output tokens, signed effects, two windows."""
    nodes = [{"id": fid, "type": "sae_feature", "label": label, "layer": 6, "activation_strength": 2.0 + n,
              "attributes": {"feature_index": int(fid.rsplit("_", 1)[1])}} for n, (fid, label) in enumerate(FEATURES)]
    nodes += [{"id": f"token_out_{i}", "type": "output_token", "label": tok, "position": i}
              for i, tok in enumerate(TOKENS)]
    incidences = []
    for n, (fid, _) in enumerate(FEATURES):
        for w, tokens in enumerate(([0, 1, 2], [3, 4, 5])):
            weight = round(1.0 - 0.2 * n - 0.1 * w, 3)
            incidences.append({
                "id": f"att_{fid}_{w}", "node_ids": [fid, *(f"token_out_{t}" for t in tokens)], "weight": weight,
                "metadata": {"type": "causal_circuit", "method": "acdc", "window": f"sent-{w}"},
                "attributes": {"value": "cosine", "effect": weight * (-1 if n == 3 else 1)},
            })
    meta = {"model_name": "sample-model", "model_hash": "", "sae_dictionary": "sample", "granularity": "sentence",
            "created_at": "2026-01-01T00:00:00+00:00"}
    return hif.build_hif(nodes, incidences, meta, hif.HypergraphConfig())


def complete_trace(tenant: Tenant, trace_id: str, *, model_name: str = "sample-model",
                   document: dict | None = None) -> Trace:
    """A complete trace with its completion event and explanation, as `persist` leaves it."""
    now = timezone.now()
    trace = Trace.objects.create(tenant=tenant, trace_id=trace_id, status="complete", stage="persist",
                                 granularity="sentence", model_name=model_name, timings=TIMINGS,
                                 finalized_at=now - timedelta(seconds=1), finished_at=now)
    payload = {"model": model_name, "prompt": "Explain.", "text": "".join(TOKENS), "tokens": TOKENS}
    TraceEvent.objects.create(trace=trace, event_type="completion", payload=payload,
                              event_hash=hashlib.sha256(trace_id.encode()).hexdigest())
    stored = graph_store(trace=trace, document=document or small_document())
    Explanation.objects.create(trace=trace, object_key=stored.key, content_sha256=stored.sha256, meta=stored.meta,
                               size_bytes=stored.size_bytes, node_count=stored.node_count,
                               incidence_count=stored.incidence_count)
    return trace


def failed_trace(tenant: Tenant, trace_id: str, *, reason: str = "activation shards expired") -> Trace:
    trace = Trace.objects.create(tenant=tenant, trace_id=trace_id, status="failed", stage="load", error=reason,
                                 timings={}, finalized_at=timezone.now())
    DeadLetter.objects.create(trace=trace, stage="load", reason=reason)
    return trace


def staff_user(django_user_model, username: str, tenant: Tenant | None = None, *, superuser: bool = False):
    """A staff user, linked to `tenant` when given (that tenant's traces only)."""
    make = django_user_model.objects.create_superuser if superuser else django_user_model.objects.create_user
    user = make(username=username, password="pw-" + username, **({} if superuser else {"is_staff": True}))
    if tenant is not None:
        StaffTenant.objects.create(user=user, tenant=tenant)
    return user
