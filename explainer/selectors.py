"""Reads. Every selector of tenant data takes `tenant=` first, so another tenant's trace is a 404 by construction."""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q, QuerySet
from django.http import Http404

from sae import DictionaryError
from sae.config import dictionary_layer_folder, dictionary_layers
from sae.formats import read_spec
from sae.labels import LABELS_FILE

from .models import ACTIVE_STATUSES, Explanation, Tenant, Trace

CATALOG_TTL_S = 30.0


def trace_get(*, tenant: Tenant, trace_id: str) -> Trace:
    trace = Trace.objects.filter(tenant=tenant, trace_id=trace_id).first()
    if trace is None:
        raise Http404(f"trace '{trace_id}' not found")
    return trace


def trace_list(*, tenant: Tenant, status: str | None = None, granularity: str | None = None,
               model: str | None = None, since: datetime | None = None) -> QuerySet[Trace]:
    """The tenant's traces, newest first, narrowed by the filters; graph counts joined in, no document loaded."""
    traces = Trace.objects.filter(tenant=tenant)
    if status:
        traces = traces.filter(status=status)
    if granularity:
        traces = traces.filter(granularity=granularity)
    if model:
        traces = traces.filter(model_name=model)
    if since is not None:
        traces = traces.filter(created__gte=since)
    return traces.annotate(node_count=F("explanation__node_count"),
                           incidence_count=F("explanation__incidence_count")).order_by("-created", "-id")


def traces_past_retention(*, now: datetime) -> QuerySet[Trace]:
    """Traces older than their tenant's retention (`Tenant.retention_days`, else `RETENTION_DAYS`; 0 keeps them),
    oldest first; a trace still being explained is left to finish."""
    due = Q(pk__in=[])
    for tenant_pk, days in Tenant.objects.values_list("pk", "retention_days"):
        days = settings.RETENTION_DAYS if days is None else days
        if days > 0:
            due |= Q(tenant_id=tenant_pk, created__lt=now - timedelta(days=days))
    return Trace.objects.filter(due).exclude(status__in=ACTIVE_STATUSES).order_by("created", "pk")


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
        "verification": trace.verification or None,
        "degraded": trace.degraded or [],
        "created": trace.created.isoformat(),
        "updated": trace.updated.isoformat(),
    }


@dataclass(frozen=True)
class DictionaryLayer:
    d_in: int
    d_sae: int
    architecture: str
    format: str
    labelled: bool


@dataclass(frozen=True)
class DictionaryCatalog:
    """What the configured dictionary set can decode: its name and what each layer's dictionary is.

    A layer whose folder cannot be read is None: events for it are accepted and the trace then fails with the
    dictionary's own error, which names the problem.
    """

    name: str
    layers: dict[int, DictionaryLayer | None]

    @property
    def widths(self) -> dict[int, int | None]:
        return {layer: info.d_in if info else None for layer, info in self.layers.items()}


_catalog: tuple[float, DictionaryCatalog] | None = None


def dictionary_catalog(*, max_age_s: float = CATALOG_TTL_S) -> DictionaryCatalog:
    """The configured dictionary set's layers, read again from disk when older than `max_age_s`."""
    global _catalog
    now = time.monotonic()
    if _catalog is None or now - _catalog[0] >= max_age_s:
        _catalog = (now, _read_catalog(settings.DICT_ROOT, settings.DICT_NAME))
    return _catalog[1]


def _read_catalog(dict_root: str, name: str) -> DictionaryCatalog:
    layers = {}
    for layer in dictionary_layers(dict_root, name):
        folder = dictionary_layer_folder(dict_root, name, layer)
        stats = sorted((p.name, p.stat()) for p in folder.iterdir() if p.is_file())
        layers[layer] = _layer_info(str(folder), tuple((n, st.st_mtime_ns, st.st_size) for n, st in stats))
    return DictionaryCatalog(name=name, layers=layers)


@lru_cache(maxsize=256)
def _layer_info(folder: str, files: tuple) -> DictionaryLayer | None:
    """One layer's description, read once per version of its files (`files`: names, mtimes and sizes).

    Reading a spec validates every weight (a full scan of a multi-GiB dictionary), so the catalog's periodic look at
    the folder must not repeat it while nothing changed.
    """
    try:
        spec = read_spec(folder)
    except DictionaryError:
        return None
    return DictionaryLayer(d_in=spec.d_in, d_sae=spec.d_sae, architecture=spec.architecture, format=spec.format,
                           labelled=any(name == LABELS_FILE for name, _, _ in files))
