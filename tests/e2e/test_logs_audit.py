"""A trace with PII, sent with an X-Request-ID, through the live server and a real worker: the worker's output is
JSON lines that carry the request id with the trace's tenant, trace id, run id and stage; the PII is masked in the
stored graph and in every log line; the audit chain holds the trace's queued and complete rows and verifies."""
from __future__ import annotations

import json

import pytest

from explainer.audit import audit_chain_verify
from explainer.models import AuditEvent
from hypergraph_site.demo.samples import sample_events

pytestmark = pytest.mark.django_db(transaction=True)

EMAIL = "ann.lee@example.com"


def _events_with_pii(trace_id: str) -> list[dict]:
    """The biology sample under a new id, one of its tokens an email address (same count, so rows still fit)."""
    events = [{**e, "trace_id": trace_id} for e in sample_events() if e["trace_id"] == "sample-biology"]
    payload = dict(events[0]["payload"])
    payload["tokens"] = [payload["tokens"][0], f" {EMAIL}", *payload["tokens"][2:]]
    payload["text"] = "".join(payload["tokens"])
    events[0] = {**events[0], "payload": payload}
    return events


def _json_lines(text: str) -> list[dict]:
    """Every line the worker wrote after its start-up banner and before its shutdown notice (what Celery prints
    itself, not through logging)."""
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("worker: ")]
    banner_end = max(i for i, line in enumerate(lines) if line.lstrip().startswith(". explainer.tasks."))
    return [json.loads(line) for line in lines[banner_end + 1:]]


def test_worker_lines_are_json_with_the_request_id_and_no_pii(http, e2e_dirs):
    trace_id, request_id = "logs-pii-1", "e2e-request-7f3a"
    for event in _events_with_pii(trace_id):
        status, body = http.post(event, headers={"X-Request-ID": request_id})
        assert status == 202, body
    summary = http.wait_terminal(trace_id)
    assert summary["status"] == "complete", summary["error"]

    status, document = http.get(f"/v1/traces/{trace_id}/graph")
    assert status == 200
    assert EMAIL not in json.dumps(document) and "[EMAIL]" in json.dumps(document)

    output = e2e_dirs["log"].read_text()
    assert EMAIL not in output
    lines = _json_lines(output)
    ours = [line for line in lines if line.get("request_id") == request_id]
    assert ours, "no worker line carries the request id"
    assert all(line["trace_id"] == trace_id and line["tenant"] == "alice" and line["run_id"] for line in ours)
    assert {line["stage"] for line in ours} >= {"load", "sae_decode", "attribute", "build", "persist"}
    assert all({"event", "level", "logger", "timestamp"} <= set(line) for line in lines)

    actions = AuditEvent.objects.filter(target=trace_id).values_list("action", "actor")
    assert [a for a, _ in actions] == ["trace.queued", "trace.complete"]
    assert actions[0][1].startswith("key:") and actions[1][1] == "system"
    assert audit_chain_verify().ok
