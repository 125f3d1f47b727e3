"""A trace's concepts and their interactions on its first emitted token, and the provider's word on each group."""
from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from explainer.prompt_concepts import concepts_of
from explainer.shadow import Shadow
from explainer.trace_data import Completion

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

WORDS = "the cells divide and nucleus holds genome".split()
PROMPT = 'the "cells" divide and the `nucleus` holds'
TARGET = "genome"


def word_tokenizer():
    vocab = {"[UNK]": 0, **{word: i + 1 for i, word in enumerate(WORDS)}}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")


class StandIns:
    """P(genome) = 0.9 while "cells" or "nucleus" is in the prompt, else 0.1: the two stand in for each other."""

    name = "stand-ins"

    def __init__(self, tokenizer) -> None:
        self.ids = {tokenizer.convert_tokens_to_ids(word) for word in ("cells", "nucleus")}

    def next_token_probabilities(self, prompts, target):
        return np.array([0.9 if self.ids & set(p.tolist()) else 0.1 for p in prompts])


@pytest.fixture
def traced():
    tokenizer = word_tokenizer()
    shadow = Shadow(model=StandIns(tokenizer), tokenizer=tokenizer, vocab_size=len(WORDS) + 1, max_positions=None)
    sequence = np.array([*tokenizer(PROMPT)["input_ids"], tokenizer.convert_tokens_to_ids(TARGET)])
    return shadow, Completion(model="m", prompt=PROMPT, text=" genome"), sequence


class Provider(BaseHTTPRequestHandler):
    """Ranks " genome" first unless the prompt has a masked concept; answers like /v1/completions with logprobs."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        probability = 0.1 if "[MASK]" in body["prompt"] else 0.9
        data = json.dumps({"choices": [{"logprobs": {"top_logprobs": [{TARGET: math.log(probability)}]}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def provider(settings):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Provider)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.LLM_PROXY_URL = f"http://127.0.0.1:{server.server_port}"
    yield server
    server.shutdown()


def test_the_stand_in_concepts_form_an_edge_on_the_emitted_token(traced, settings):
    settings.LLM_PROXY_URL = ""
    record = concepts_of(*traced)
    assert [(c["text"], c["tokens"]) for c in record["concepts"]] == [("cells", [2]), ("nucleus", [8])]
    assert record["target"] == {"id": WORDS.index(TARGET) + 1, "text": TARGET, "position": 11}
    [edge] = record["edges"]
    assert edge["members"] == ["c0", "c1"] and edge["synergy"] == pytest.approx(0.8) and "provider" not in edge


def test_the_provider_checks_each_edge_when_configured(traced, provider):
    [edge] = concepts_of(*traced)["edges"]
    assert edge["provider"]["label"] == "verified" and edge["provider"]["agrees"] is True
    assert (edge["provider"]["p0"], edge["provider"]["p_group"]) == (pytest.approx(0.9), pytest.approx(0.1))


def test_traces_whose_prompt_does_not_line_up_say_why(traced):
    shadow, completion, sequence = traced
    assert concepts_of(shadow, Completion(prompt=" "), sequence) == {"skipped": "the completion has no prompt"}
    assert concepts_of(shadow, completion, sequence[::-1]) == {
        "skipped": "the prompt's tokens are not the first tokens of the trace's sequence"}


@pytest.mark.parametrize("tokens, placed", [
    (["<s>", "the", " cat", " sat"], (1, [(0, 3), (3, 7)])),  # a leading special token, then the prompt
    (["the", " cat", " sat"], (0, [(0, 3), (3, 7)])),
    (["the", " ca", "t sat"], None),  # a token crosses the prompt's end
    (["the", " cat"], None),  # nothing emitted after the prompt
    (["<s>", "<pad>", "the", " cat", " sat"], None),  # at most one leading special token
])
def test_the_prompt_is_placed_by_the_completions_own_token_texts(tokens, placed):
    from explainer.prompt_concepts import prompt_placement

    found = prompt_placement(tokens, "the cat")
    assert (None if found is None else (found.offset, found.spans)) == placed


@pytest.mark.django_db
def test_the_attribute_stage_reads_concepts_through_shadow_endpoint_and_survives_it_being_down(settings, alice):
    from explainer.models import Trace, TraceEvent
    from explainer.pipeline import _concepts
    from tests.local_servers import free_port

    settings.SHADOW_ENDPOINT, settings.SHADOW_ENDPOINT_TIMEOUT_S = f"http://127.0.0.1:{free_port()}", 2.0
    trace = Trace.objects.create(tenant=alice[0], trace_id="endpoint-down")
    TraceEvent.objects.create(trace=trace, event_type="completion", event_hash="h", payload={
        "model": "m", "prompt": "ask 'New York' now", "text": " ok",
        "tokens": ["ask", " '", "New", " York", "'", " now", " ok"], "token_ids": [1, 2, 3, 4, 5, 6, 7]})
    record = _concepts(trace, None)
    assert record["skipped"].startswith("concept extraction or interactions failed: EndpointError")
