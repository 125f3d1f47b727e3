"""The audit log: append-only, hash-chained rows saying who did what, written in the transaction of what they record.

Each row's `hash` covers the previous row's hash and the row's own fields in canonical JSON, so editing a row, or
deleting one, breaks the chain at that row (`audit_chain_verify`, `manage.py audit_verify`). Writers are serialised,
so the chain never forks: on PostgreSQL by a transaction-scoped advisory lock taken just before the row is written
(callers write their audit row last in their transaction, so the lock is held only until their commit); SQLite
serialises writers anyway; and `seq` is unique, so a fork could not be stored even if both failed.

Details never hold secrets or the `Authorization` header, and their strings are PII-scrubbed like stored text.
With `AUDIT_LOG_PATH` each committed row is also appended there as a JSON line, for shipping off the host.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from .models import AuditEvent, Tenant
from .pii import scrub_value

logger = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
# Key of the PostgreSQL advisory lock that serialises audit writers ("Audit" in ASCII).
ADVISORY_LOCK_KEY = 0x4175646974
SYSTEM = "system"
CLI = "cli"

_append_lock = threading.Lock()


def key_actor(prefix: str) -> str:
    """The actor of a request made with an API key: its public prefix, never the key."""
    return f"key:{prefix}"


def admin_actor(username: str) -> str:
    return f"admin:{username}"


def _plain(value: Any) -> Any:
    """Details as they read back from a JSON column: floats as text (JSONB may print them differently), tuples as
    lists, anything else JSON lacks as its text, so the hash of a stored row can be computed again."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def row_hash(*, seq: int, at: datetime, actor: str, tenant: str, action: str, target: str, details: dict,
             prev_hash: str) -> str:
    """SHA-256 of the previous hash followed by the canonical JSON (sorted keys, no spaces) of the row's fields."""
    canonical = json.dumps({"seq": seq, "at": at.isoformat(), "actor": actor, "tenant": tenant, "action": action,
                            "target": target, "details": details}, sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def audit_record(*, action: str, actor: str, tenant: Tenant | str | None = None, target: str = "",
                 details: dict | None = None) -> AuditEvent:
    """Append one row to the chain, inside the caller's transaction (or its own): it commits or rolls back with what
    it records. Call it last in the transaction, so the writers' lock is held only until that commit."""
    slug = tenant.slug if isinstance(tenant, Tenant) else (tenant or "")
    details = _plain(details or {})
    if settings.PII_SCRUB:
        details = scrub_value(details, mask_numbers=settings.PII_MASK_NUMBERS)
        target = scrub_value(target, mask_numbers=settings.PII_MASK_NUMBERS)
    # No savepoint: nothing here is worth rolling back alone, and a savepoint costs two more round trips.
    with transaction.atomic(savepoint=False):
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ADVISORY_LOCK_KEY])
        last = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
        seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
        fields = {"seq": seq, "at": timezone.now(), "actor": actor[:200], "tenant": slug, "action": action,
                  "target": target[:300], "details": details}
        event = AuditEvent(**fields, prev_hash=prev_hash, hash=row_hash(**fields, prev_hash=prev_hash))
        event.save(force_insert=True)
        if settings.AUDIT_LOG_PATH:
            line = json.dumps({**fields, "at": fields["at"].isoformat(), "prev_hash": prev_hash,
                               "hash": event.hash}, sort_keys=True, ensure_ascii=False)
            transaction.on_commit(lambda: _append(settings.AUDIT_LOG_PATH, line))
    return event


def _append(path: str, line: str) -> None:
    """Append one line with a single write (O_APPEND), so lines of concurrent processes never interleave."""
    try:
        with _append_lock, open(path, "a", encoding="utf-8") as file:
            file.write(line + "\n")
    except OSError:
        logger.exception("could not append to AUDIT_LOG_PATH %s; the row is in the database", path)


@dataclass(frozen=True)
class ChainCheck:
    """What `audit_chain_verify` found: rows checked, and the first broken one (None when the chain is whole)."""

    checked: int
    broken_seq: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_seq is None


def audit_chain_verify(*, batch_size: int = 2000) -> ChainCheck:
    """Walk the chain from the first row: each `seq` follows the one before, each `prev_hash` is the previous row's
    hash, and each hash is what its fields give. Deleting the newest rows leaves a whole, shorter chain: only a copy
    kept elsewhere (`AUDIT_LOG_PATH`) shows that."""
    expected, prev_hash, checked = 1, GENESIS_HASH, 0
    for row in AuditEvent.objects.order_by("seq").iterator(chunk_size=batch_size):
        if row.seq != expected:
            return ChainCheck(checked, row.seq, f"rows {expected}..{row.seq - 1} are missing (deleted)"
                              if row.seq > expected else f"seq {row.seq} repeats or goes back")
        if row.prev_hash != prev_hash:
            return ChainCheck(checked, row.seq, "prev_hash is not the previous row's hash")
        computed = row_hash(seq=row.seq, at=row.at, actor=row.actor, tenant=row.tenant, action=row.action,
                            target=row.target, details=row.details, prev_hash=row.prev_hash)
        if computed != row.hash:
            return ChainCheck(checked, row.seq, "the row's fields do not give its hash (it was edited)")
        expected, prev_hash, checked = expected + 1, row.hash, checked + 1
    return ChainCheck(checked)
