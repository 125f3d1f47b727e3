"""Several `activations` events on one trace, one per layer: every one is stored and every layer is explained."""
from __future__ import annotations

import base64

import numpy as np
import pytest

from hypergraph_site.demo.samples import D_IN, make_dictionary, planted_activations
from explainer.text import tokenize
from tests.e2e.dictionaries import owned_layers, write_sample_layer
from tests.e2e.graphs import graph_features

pytestmark = pytest.mark.django_db(transaction=True)

TEXT = "Cells divide by mitosis. The nucleus holds the genome."
# A different topic per layer, so each layer's features differ. Not layer 3 (the example; tests/api covers it
# without a worker): here layer 3 is test_capture's trained MiniLM dictionary, and the package-scoped worker keeps
# the dictionaries it has loaded, so a test must own its layers. Layers 1, 3, 6 and 9 belong to other e2e tests.
TOPIC_OF_LAYER = {5: "Biology", 7: "Code"}


@pytest.fixture
def two_layer_dictionaries(e2e_dirs):
    """The sample dictionary written as the dictionaries of layers 5 and 7 (with their own hook names)."""
    dictionary = make_dictionary()
    with owned_layers(e2e_dirs, list(TOPIC_OF_LAYER)) as folders:
        for layer, folder in zip(TOPIC_OF_LAYER, folders):
            write_sample_layer(folder, dictionary, layer)
        yield dictionary


def test_two_activations_events_of_two_layers_are_both_stored_and_explained(http, two_layer_dictionaries):
    dictionary = two_layer_dictionaries
    tokens = tokenize(TEXT)
    acts = {layer: planted_activations(dictionary, topic, len(tokens), seed=layer)
            for layer, topic in TOPIC_OF_LAYER.items()}
    assert all(a.shape == (len(tokens), D_IN) for a in acts.values())
    events = [{"trace_id": "two-layers", "event_type": "completion", "granularity": "sentence",
               "payload": {"model": "sample-model", "prompt": "Explain briefly.", "text": TEXT, "tokens": tokens}}]
    events += [{"trace_id": "two-layers", "event_type": "activations",
                "payload": {"layer": layer, "token_offset": 0, "encoding": "f16-base64", "shape": list(a.shape),
                            "data": base64.b64encode(a.astype("<f2").tobytes()).decode(), "convention": "hf_raw"}}
               for layer, a in acts.items()]
    events.append({"trace_id": "two-layers", "event_type": "finalize", "payload": {}})
    for event in events:
        status, body = http.post(event)
        assert status == 202, body

    summary = http.wait_terminal("two-layers")
    assert summary["status"] == "complete", summary["error"]
    assert summary["counts"]["events"] == 4  # completion, layer 5, layer 7, finalize

    status, doc = http.get("/v1/traces/two-layers/graph")
    assert status == 200
    features = graph_features(doc)
    for layer, x in acts.items():
        # Test-side encoder: each layer's strongest features must be in the graph under that layer's ids.
        dense = np.maximum((x - dictionary.b_dec) @ dictionary.W_enc + dictionary.b_enc, 0)
        strongest = {f"feat_{layer}_{i}" for i in np.argsort(-dense.max(axis=0))[:3].tolist()}
        assert strongest <= features, (layer, sorted(strongest - features))
    assert {node["layer"] for node in doc["nodes"] if node["type"] == "sae_feature"} <= set(TOPIC_OF_LAYER)
