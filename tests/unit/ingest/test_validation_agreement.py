"""The fast validator (fastjsonschema on a draft-07 translation) and the reference (jsonschema, 2020-12) must accept
exactly the same bodies: the fast one decides on valid bodies alone, the reference writes every error."""
from __future__ import annotations

import copy

import fastjsonschema
from hypothesis import given, settings as hypothesis_settings, strategies as st

from ingest.validation import Limits, _fast_check, _validator

LIMITS = Limits(max_trace_tokens=64, max_layers=4, max_activation_width=32, max_text_chars=200)

VALID = [
    {"trace_id": "t-1", "event_type": "completion", "granularity": "token",
     "payload": {"model": "m", "text": "Hi there.", "tokens": ["Hi", " there", "."], "token_ids": [1, 2, 3],
                 "prompt": "Say hi", "final": False}},
    {"trace_id": "t-1", "event_type": "activations",
     "payload": {"layer": 3, "token_offset": 2, "encoding": "json", "shape": [2, 4], "data": [[0.0] * 4] * 2}},
    {"trace_id": "t-1", "event_type": "activations",
     "payload": {"layers": [1, 3], "tokens": 5, "d_model": 16, "shards": ["a:1"], "hook_point": "resid_post"}},
    {"trace_id": "t-1", "event_type": "finalize", "payload": {}},
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)
keys = st.sampled_from(["trace_id", "event_type", "granularity", "payload", "layer", "layers", "shape", "data",
                        "encoding", "token_offset", "shards", "tokens", "token_ids", "text", "model", "d_model",
                        "final", "prompt", "extra"])


def _agree(document) -> None:
    reference_ok = not list(_validator(LIMITS).iter_errors(document))
    try:
        _fast_check(LIMITS)(document)
        fast_ok = True
    except fastjsonschema.JsonSchemaException:
        fast_ok = False
    assert fast_ok == reference_ok, document


def test_the_valid_templates_are_valid_for_both():
    for document in VALID:
        _agree(document)
        _fast_check(LIMITS)(document)


@hypothesis_settings(max_examples=400, deadline=None)
@given(template=st.sampled_from(VALID), where=st.booleans(), key=keys, value=json_values, drop=st.booleans())
def test_mutated_bodies_are_judged_alike(template, where, key, value, drop):
    document = copy.deepcopy(template)
    target = document["payload"] if where and isinstance(document.get("payload"), dict) else document
    if drop:
        target.pop(key, None)
    else:
        target[key] = value
    _agree(document)


@given(rows=st.integers(-2, 80), width=st.integers(-2, 40), offset=st.integers(-2, 80),
       layers=st.lists(st.integers(-1, 5000), max_size=6))
def test_the_limits_are_judged_alike(rows, width, offset, layers):
    inline, envelope = copy.deepcopy(VALID[1]), copy.deepcopy(VALID[2])
    inline["payload"].update(shape=[rows, width], token_offset=offset, layer=layers[0] if layers else 0)
    envelope["payload"].update(layers=layers, tokens=rows, d_model=width)
    _agree(inline)
    _agree(envelope)
