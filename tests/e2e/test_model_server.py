"""The reference model server as its own process: OpenAI-compatible answers, each explained by the sidecar."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from hypergraph_site.demo import processes
from tests.e2e.dictionaries import owned_layers, write_random_tied
from tests.local_servers import free_port

pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LAYER = 0  # the served model's first block; the other e2e tests' layers are 1, 2, 3, 5, 6, 7 and 9
WIDTH = 128  # models/pydoc-gpt2's d_model
QUESTION = [{"role": "system", "content": "You answer questions about Python."},
            {"role": "user", "content": "What does the import statement do?"}]


@pytest.fixture
def layer_dictionary(e2e_dirs):
    """A random tied ReLU dictionary for the served model's layer 0: the plumbing needs one, the model is real."""
    with owned_layers(e2e_dirs, [LAYER]) as [folder]:
        write_random_tied(folder, WIDTH, seed=LAYER)
        yield folder


@pytest.fixture
def model_server(http, live_server, layer_dictionary, e2e_dirs):
    port = free_port()
    process = processes.start_model_server(port, e2e_dirs["log"].with_name("model_server.log"),
                                           sidecar_url=live_server.url, api_key=http.client.api_key, layers=[LAYER])
    try:
        processes.wait_http(f"http://127.0.0.1:{port}/healthz", timeout_s=60, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        processes.stop(process)


def post(url: str, body: dict) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def events(raw: bytes) -> list[dict]:
    lines = [line.removeprefix("data: ") for line in raw.decode().split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_an_answer_is_served_and_explained_under_the_trace_id_it_names(model_server, http):
    status, headers, raw = post(f"{model_server}/v1/chat/completions", {
        "messages": QUESTION, "max_tokens": 12, "logprobs": True, "top_logprobs": 3, "frequency_penalty": 1.0})
    assert status == 200, raw
    answer = json.loads(raw)
    choice = answer["choices"][0]
    assert answer["object"] == "chat.completion" and choice["message"]["role"] == "assistant"
    content = choice["logprobs"]["content"]
    assert "".join(c["token"] for c in content) == choice["message"]["content"]
    assert len(content) == answer["usage"]["completion_tokens"] == 12 and choice["finish_reason"] == "length"
    assert all(len(c["top_logprobs"]) == 3 and c["logprob"] <= 0 for c in content)
    summary = http.wait_terminal(headers["X-Trace-Id"], timeout_s=120)
    assert summary["status"] == "complete", summary["error"]
    status, graph = http.get(f"/v1/traces/{headers['X-Trace-Id']}/graph")
    assert status == 200 and graph["incidences"]


def test_a_streamed_answer_is_the_same_answer_in_pieces(model_server, http):
    body = {"prompt": "The for statement is used to", "max_tokens": 10, "logprobs": 2, "presence_penalty": 1.0}
    _, _, whole = post(f"{model_server}/v1/completions", body)
    status, headers, raw = post(f"{model_server}/v1/completions", {**body, "stream": True})
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    chunks = events(raw)
    expected = json.loads(whole)["choices"][0]
    assert "".join(c["choices"][0]["text"] for c in chunks) == expected["text"]
    assert [c["choices"][0]["logprobs"]["token_logprobs"][0] for c in chunks[:-1]] == \
        expected["logprobs"]["token_logprobs"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length" and chunks[-1]["usage"]["completion_tokens"] == 10
    assert http.wait_terminal(headers["X-Trace-Id"], timeout_s=120)["status"] == "complete"


def test_a_request_beyond_the_models_context_is_refused_with_the_reason(model_server):
    status, _, raw = post(f"{model_server}/v1/completions", {"prompt": "word " * 1000, "max_tokens": 256})
    error = json.loads(raw)["error"]
    assert status == 400 and error["type"] == "invalid_request_error", error
    assert "exceed the model's context of 256 tokens" in error["message"]
