"""The audit log: a hash chain that `audit_verify` walks, broken by any edited or deleted row; no forks under
concurrent writers; JSON lines only for committed rows; keys audited by prefix, never by value."""
from __future__ import annotations

import json
import threading

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from explainer.audit import GENESIS_HASH, audit_chain_verify, audit_record
from explainer.models import ApiKey, AuditEvent
from explainer.services import api_key_create, api_key_revoke

pytestmark = pytest.mark.django_db(transaction=True)


def record(n: int) -> None:
    for i in range(n):
        audit_record(action="test.event", actor="system", tenant="alice", target=f"t-{i}", details={"i": i})


def raw_sql(sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql.format(table=AuditEvent._meta.db_table))


def test_rows_are_chained_from_the_genesis_hash():
    record(3)
    rows = list(AuditEvent.objects.all())
    assert [r.seq for r in rows] == [1, 2, 3]
    assert rows[0].prev_hash == GENESIS_HASH
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    assert audit_chain_verify().checked == 3
    call_command("audit_verify")


@pytest.mark.parametrize(("tamper", "seq", "why"), [
    ("UPDATE {table} SET actor = 'mallory' WHERE seq = 2", 2, "edited"),
    ("UPDATE {table} SET at = at + interval '1 second' WHERE seq = 3", 3, "edited"),
    ("UPDATE {table} SET hash = prev_hash WHERE seq = 2", 2, "edited"),
    ("DELETE FROM {table} WHERE seq = 2", 3, "missing"),
    ("DELETE FROM {table} WHERE seq = 1", 2, "missing"),
])
def test_tampering_is_reported_at_the_first_broken_row(tamper, seq, why):
    if "interval" in tamper and connection.vendor != "postgresql":
        pytest.skip("interval arithmetic is PostgreSQL's")
    record(4)
    raw_sql(tamper)
    check = audit_chain_verify()
    assert (check.ok, check.broken_seq) == (False, seq) and why in check.reason
    with pytest.raises(CommandError, match=f"broken at seq {seq}"):
        call_command("audit_verify")


def test_rows_cannot_be_changed_or_deleted_through_the_model():
    record(1)
    row = AuditEvent.objects.get()
    row.actor = "mallory"
    with pytest.raises(ValidationError):
        row.save()
    with pytest.raises(ValidationError):
        row.delete()


def test_json_lines_are_written_for_committed_rows_only(settings, tmp_path):
    settings.AUDIT_LOG_PATH = str(tmp_path / "audit.jsonl")
    record(1)
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_record(action="test.rolled_back", actor="system")
        raise RuntimeError
    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    row = AuditEvent.objects.get()
    assert [(line["seq"], line["action"], line["hash"]) for line in lines] == [(1, "test.event", row.hash)]


def test_details_and_targets_are_scrubbed():
    audit_record(action="test.event", actor="system", target="ann@example.com",
                 details={"note": "mail ann@example.com from 10.0.0.1"})
    row = AuditEvent.objects.get()
    assert (row.target, row.details) == ("[EMAIL]", {"note": "mail [EMAIL] from [IP]"})


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_concurrent_writers_never_fork_the_chain():
    """Writers in their own transactions at once: every seq once, each row on the one before (the advisory lock)."""
    writers, per_writer = 8, 10
    start = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            start.wait()
            for _ in range(per_writer):
                with transaction.atomic():
                    audit_record(action="test.concurrent", actor="system")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert list(AuditEvent.objects.values_list("seq", flat=True)) == list(range(1, writers * per_writer + 1))
    assert audit_chain_verify().ok


def test_key_creation_by_the_command_and_revocation_are_audited_by_prefix(capsys):
    call_command("create_tenant", "dora")
    key = capsys.readouterr().out.strip()
    api_key = ApiKey.objects.get(tenant__slug="dora")
    assert api_key_revoke(api_key=api_key, actor="admin:root")
    assert not api_key_revoke(api_key=api_key, actor="admin:root")
    rows = list(AuditEvent.objects.values_list("action", "actor", "tenant", "target"))
    assert rows == [("api_key.created", "cli", "dora", f"key:{api_key.prefix}"),
                    ("api_key.revoked", "admin:root", "dora", f"key:{api_key.prefix}")]
    stored = json.dumps(list(AuditEvent.objects.values()), default=str)
    assert key not in stored and key.split(".")[1] not in stored and api_key.hashed_key not in stored


def test_a_failed_key_creation_leaves_no_audit_row(alice):
    tenant, _ = alice
    before = AuditEvent.objects.count()
    with pytest.raises(ValueError):
        api_key_create(tenant=tenant, scopes=["nonsense"])
    assert AuditEvent.objects.count() == before
