"""Where a tenant's graph documents and a trace's stage artifacts live in the object store: one key scheme.

A graph document's key is `<prefix>/<tenant>/<yyyy>/<mm>/<dd>/<safe-trace-id>-<hash8>.hif.json.gz`. Trace ids come
from clients, so they are never used as they are: `../../etc/passwd`, `/abs`, `a/../../b`, NUL bytes, a 10 kB id or
look-alike Unicode are slugified (ASCII letters, digits, `-` and `_` only, at most `MAX_SLUG_CHARS`) and so can never
leave the tenant's prefix; the first 8 hex digits of the id's SHA-256 keep ids that slugify alike apart (two ids of
one tenant on one day share a key only if both their slugs and their 32-bit hashes agree). The date is the trace's
creation day (UTC), so an operator can find and expire objects by prefix without the database.

Stage artifacts live under `<prefix>/_artifacts/<trace pk>/`: a tenant's segment is a slug, and slugs never start
with `_`, so no tenant prefix can ever hold or reach them.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from django.utils.text import slugify

MAX_SLUG_CHARS = 64
GRAPH_SUFFIX = ".hif.json.gz"
ARTIFACTS_SEGMENT = "_artifacts"


def hash8(text: str) -> str:
    """First 8 hex digits of the SHA-256 of `text` (lone surrogates included, as JSON may carry them)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _slug(text: str) -> str:
    """`text` as a slug of at most `MAX_SLUG_CHARS`: NFKD-folded to ASCII, lowercased, only `[a-z0-9_-]`."""
    return slugify(text)[:MAX_SLUG_CHARS].strip("-_")


def clean_prefix(prefix: str) -> str:
    """The operator's `S3_PREFIX` without empty, `.` or `..` segments (`"/hg//graphs/"` is `"hg/graphs"`)."""
    return "/".join(part for part in prefix.split("/") if part not in ("", ".", ".."))


def _join(*parts: str) -> str:
    return "/".join(part for part in parts if part)


def tenant_segment(slug: str) -> str:
    """The tenant's own folder: its slug when that is already a clean slug, else the slug of it plus its hash."""
    clean = _slug(slug)
    return clean if clean and clean == slug else f"{clean or 'tenant'}-{hash8(slug)}"


def tenant_prefix(prefix: str, tenant_slug: str) -> str:
    """Every object of the tenant lies under this prefix (followed by `/`)."""
    return _join(clean_prefix(prefix), tenant_segment(tenant_slug))


def graph_key(prefix: str, tenant_slug: str, trace_id: str, created: datetime) -> str:
    """The key of a trace's gzipped HIF document."""
    day = created.astimezone(timezone.utc) if created.tzinfo else created
    name = f"{_slug(trace_id) or 'trace'}-{hash8(trace_id)}{GRAPH_SUFFIX}"
    return _join(tenant_prefix(prefix, tenant_slug), f"{day:%Y}", f"{day:%m}", f"{day:%d}", name)


def artifacts_prefix(prefix: str, trace_pk: int) -> str:
    """The folder of one trace's stage artifacts (arrays and JSON handed from stage to stage)."""
    return _join(clean_prefix(prefix), ARTIFACTS_SEGMENT, str(int(trace_pk)))
