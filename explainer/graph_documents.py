"""Graph documents in the object store: written gzipped under the trace's key, served only when their hash matches.

PostgreSQL keeps what lists and pages need (the document's `meta`, node and incidence counts, size), the object's
key and the SHA-256 of the canonical JSON; the document itself lives in `STORAGES["graphs"]` (a folder, or S3). The
hash is checked on every read, so an object changed or replaced behind our back is reported (`GraphCorrupt`), never
served as the trace's graph. Explanations written before documents moved out keep theirs in the `document` column
(JSONB) and are served from there.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import logging
from dataclasses import dataclass

from django.conf import settings

import hif

from . import object_keys
from .models import Explanation, Trace
from .object_store import (ObjectMissing, StorageUnavailable, object_delete, object_get, object_put,
                           storage)

logger = logging.getLogger(__name__)

GRAPHS = "graphs"


class GraphCorrupt(Exception):
    """The stored object is not the document that was written (its hash differs, or it is not gzip)."""


# What reading a stored graph can raise besides a bug: the store down, the object gone, the object changed.
GRAPH_READ_ERRORS = (StorageUnavailable, ObjectMissing, GraphCorrupt)


@dataclass(frozen=True)
class StoredGraph:
    """What persist records in PostgreSQL about a document it stored."""

    key: str
    sha256: str
    size_bytes: int  # of the canonical JSON, uncompressed
    node_count: int
    incidence_count: int
    meta: dict


@dataclass(frozen=True)
class GraphBytes:
    """A checked document: its canonical JSON, and the gzip of it when that is what the store holds."""

    json: bytes
    gzipped: bytes | None


def graph_key(trace: Trace) -> str:
    return object_keys.graph_key(settings.S3_PREFIX, trace.tenant.slug, trace.trace_id, trace.created)


def graph_store(*, trace: Trace, document: dict) -> StoredGraph:
    """Write the document under the trace's key; the PUT is whole or nothing, so no reader sees part of it."""
    data = hif.dumps_canonical(document)
    key = graph_key(trace)
    object_put(storage(GRAPHS), key, gzip.compress(data, compresslevel=6, mtime=0))
    return StoredGraph(key=key, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data),
                       node_count=len(document["nodes"]), incidence_count=len(document["incidences"]),
                       meta=document.get("meta", {}))


def graph_bytes(*, explanation: Explanation) -> GraphBytes:
    """The explanation's document, checked against its recorded hash.

    Raises `GraphCorrupt` when the object does not match, `ObjectMissing` when it is gone and `StorageUnavailable`
    when the store cannot be reached.
    """
    if not explanation.object_key:
        return GraphBytes(json=hif.dumps_canonical(explanation.document), gzipped=None)
    gzipped = object_get(storage(GRAPHS), explanation.object_key)
    try:
        data = gzip.decompress(gzipped)
    except (OSError, EOFError) as exc:
        raise _corrupt(explanation, f"not a gzip stream ({exc})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != explanation.content_sha256:
        raise _corrupt(explanation, f"sha256 {digest[:12]}… differs from the recorded "
                                    f"{explanation.content_sha256[:12]}…")
    return GraphBytes(json=data, gzipped=gzipped)


def graph_load(*, explanation: Explanation) -> dict:
    """The document as a dict (for the export formats), checked like `graph_bytes`."""
    if not explanation.object_key:
        return explanation.document
    return json.loads(graph_bytes(explanation=explanation).json)


def graph_delete(*, key: str) -> None:
    if key:
        object_delete(storage(GRAPHS), key)


def _corrupt(explanation: Explanation, why: str) -> GraphCorrupt:
    message = f"the stored graph of trace {explanation.trace_id} ('{explanation.object_key}') is corrupt: {why}"
    logger.error(message)
    return GraphCorrupt(message)
