"""Management commands: create_tenant prints a working key once; replay goes through validation and accept."""
from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from explainer.models import ApiKey, Trace, TraceEvent

pytestmark = pytest.mark.django_db


def test_create_tenant_prints_a_usable_key():
    out = StringIO()
    call_command("create_tenant", "acme", "--scopes", "traces:read", stdout=out, stderr=StringIO())
    key = out.getvalue().strip()
    api_key = ApiKey.objects.get_from_key(key)
    assert api_key.tenant.slug == "acme" and api_key.scopes == ["traces:read"]
    assert key not in api_key.hashed_key


def test_create_tenant_refuses_unknown_scopes():
    with pytest.raises(CommandError, match="unknown scopes"):
        call_command("create_tenant", "acme", "--scopes", "admin", stdout=StringIO(), stderr=StringIO())


def test_replay_in_process_uses_the_ingest_path(alice, tmp_path, redis_flush):
    lines = [
        {"trace_id": "r-1", "event_type": "completion", "payload": {"model": "m", "text": "Hi."}},
        {"trace_id": "r-1", "event_type": "finalize", "payload": {}},
        {"trace_id": "r-1", "event_type": "finalize", "payload": {}},
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    call_command("replay", str(path), "--tenant", "alice", stdout=StringIO(), stderr=StringIO())
    trace = Trace.objects.get(trace_id="r-1")
    assert trace.finalized_at is not None and trace.stage == "load"
    assert TraceEvent.objects.count() == 2


def test_replay_reports_the_bad_line(alice, tmp_path, redis_flush):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({"trace_id": "bad id", "event_type": "finalize", "payload": {}}) + "\n")
    with pytest.raises(CommandError, match="events.jsonl:1"):
        call_command("replay", str(path), "--tenant", "alice", stdout=StringIO(), stderr=StringIO())
