"""POST /ingest with PII in a completion: stored masked, token positions kept, duplicates still one event; the
request id echoed; the finalize audited as queued by the key's prefix; refused keys audited without the key."""
from __future__ import annotations

import pytest

from explainer.audit import audit_chain_verify
from explainer.models import AuditEvent, Trace, TraceEvent
from explainer.text import tokenize
from tests.api.test_ingest import completion, finalize, post

pytestmark = pytest.mark.django_db

TEXT = "Write to jane.roe@example.com or call 555-123-4567, card 4111 1111 1111 1111."


@pytest.fixture
def writer(alice, client_for, redis_flush):
    return client_for(alice[1])


def _stored(trace_id: str) -> dict:
    return TraceEvent.objects.get(trace__trace_id=trace_id, event_type="completion").payload


def test_completion_is_stored_masked_with_its_token_count(writer):
    tokens = tokenize(TEXT)
    body = completion("p-1", text=TEXT, tokens=tokens, prompt="I am jane.roe@example.com, SSN 123-45-6789")
    assert post(writer, body).status_code == 202
    stored = _stored("p-1")
    assert stored["text"] == "Write to [EMAIL] or call [PHONE], card [CARD]."
    assert stored["prompt"] == "I am [EMAIL], SSN [SSN]"
    assert len(stored["tokens"]) == len(tokens) == Trace.objects.get(trace_id="p-1").token_count
    assert "".join(stored["tokens"]) == stored["text"]


def test_text_without_tokens_gets_the_unmasked_texts_token_positions(writer):
    assert post(writer, completion("p-2", text=TEXT)).status_code == 202
    stored = _stored("p-2")
    assert len(stored["tokens"]) == len(tokenize(TEXT)) == Trace.objects.get(trace_id="p-2").token_count
    assert "jane" not in str(stored)


def test_text_without_pii_is_stored_as_sent(writer):
    assert post(writer, completion("p-3", text="Cells divide in 2024.")).status_code == 202
    assert _stored("p-3") == {"model": "m", "text": "Cells divide in 2024."}


def test_the_same_event_sent_twice_is_one_event(writer):
    for _ in range(2):
        assert post(writer, completion("p-4", text=TEXT)).status_code == 202
    assert TraceEvent.objects.filter(trace__trace_id="p-4").count() == 1


def test_scrubbing_can_be_turned_off(writer, settings):
    settings.PII_SCRUB = False
    assert post(writer, completion("p-5", text=TEXT)).status_code == 202
    assert _stored("p-5")["text"] == TEXT


def test_request_id_is_echoed_or_made_up(writer):
    response = writer.post("/ingest", data=completion("r-1"), format="json", HTTP_X_REQUEST_ID="client-req.42")
    assert response["X-Request-ID"] == "client-req.42"
    made_up = writer.get("/v1/traces/r-1")["X-Request-ID"]
    forged = writer.get("/v1/traces/r-1", HTTP_X_REQUEST_ID="bad id\nX-Evil: 1")["X-Request-ID"]
    assert len(made_up) == 32 and made_up != forged and "\n" not in forged


def test_finalize_is_audited_as_queued_by_the_keys_prefix(writer, alice):
    _, key = alice
    for body in (completion("q-1"), finalize("q-1")):
        assert post(writer, body).status_code == 202
    row = AuditEvent.objects.get(action="trace.queued")
    assert (row.actor, row.tenant, row.target) == (f"key:{key.split('.')[0]}", "alice", "q-1")
    assert row.details["run_id"] == str(Trace.objects.get(trace_id="q-1").run_id)
    assert audit_chain_verify().ok


def test_refused_requests_are_audited_without_the_key(client_for, alice, charlie, redis_flush):
    prefix = "Abcd1234"
    wrong = f"{prefix}.{'x' * 32}"
    assert post(client_for(None), completion()).status_code == 401
    assert post(client_for(wrong), completion()).status_code == 401
    assert post(client_for(charlie[1]), completion()).status_code == 403
    rows = list(AuditEvent.objects.filter(action="auth.denied"))
    assert [(r.actor, r.details["status"]) for r in rows] == [
        ("anonymous", 401), (f"key:{prefix}", 401), (f"key:{charlie[1].split('.')[0]}", 403)]
    assert rows[2].tenant == "charlie" and rows[0].target == "POST /ingest"
    assert not any(wrong in str(r.details) or "x" * 32 in r.actor for r in rows)
