"""An event's stored form: its payload serialized once, and the hash idempotency relies on unchanged by that."""
from __future__ import annotations

import hashlib
import json

from hypothesis import given, strategies as st

from ingest.services import event_row
from ingest.validation import IngestEvent

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(payload=st.dictionaries(st.text(max_size=8), json_values, max_size=6),
       event_type=st.sampled_from(["completion", "activations", "finalize"]),
       granularity=st.sampled_from([None, "sentence", "token"]))
def test_the_hash_is_the_sha256_of_the_canonical_event_and_the_stored_payload_is_the_payload(
        payload: dict, event_type: str, granularity: str | None) -> None:
    event = IngestEvent(trace_id="t", event_type=event_type, payload=payload, granularity=granularity)
    row = event_row(event)
    canonical = json.dumps({"event_type": event_type, "payload": payload, "granularity": granularity},
                           sort_keys=True, separators=(",", ":"))
    assert row.event_hash == hashlib.sha256(canonical.encode()).hexdigest()
    assert json.loads(row.payload_json) == payload
    assert row.granularity == (granularity or "")
