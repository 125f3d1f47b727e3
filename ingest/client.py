"""HTTP client for `POST /ingest` and the trace read API, plus `capture_and_send` for one prompt end to end.

Standard library only (urllib), so a model server needs nothing new. Retries are safe because the service
acknowledges an identical event again without duplicate work; they cover connection errors and 429/5xx (honouring
`Retry-After`, which the service sends with 503 when its Redis is down), with exponential backoff and full jitter
so that many clients recovering at once do not stampede. Other 4xx are the caller's bug and raise at once.
"""
from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Sequence

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class IngestError(Exception):
    """A request that failed for good: `status` (None when the server was never reached) and the decoded `body`."""

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class IngestClient:
    """`IngestClient(base_url, api_key)`; every method returns the decoded JSON response."""

    def __init__(self, base_url: str, api_key: str, *, timeout_s: float = 10.0, max_retries: int = 5,
                 backoff_s: float = 0.25, backoff_max_s: float = 8.0, retry_after_max_s: float = 30.0,
                 seed: int | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.retry_after_max_s = retry_after_max_s
        self._random = random.Random(seed)
        self._sleep = sleep

    def post_event(self, trace_id: str, event_type: str, payload: dict[str, Any], *,
                   granularity: str | None = None) -> dict[str, Any]:
        event: dict[str, Any] = {"trace_id": trace_id, "event_type": event_type, "payload": payload}
        if granularity is not None:
            event["granularity"] = granularity
        return self.request("POST", "/ingest", event)[1]

    def send_completion(self, trace_id: str, *, model: str, text: str, prompt: str | None = None,
                        tokens: Sequence[str] | None = None, token_ids: Sequence[int] | None = None,
                        model_hash: str | None = None, final: bool = False,
                        granularity: str | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": model, "text": text}
        optional = {"prompt": prompt, "tokens": list(tokens) if tokens is not None else None,
                    "token_ids": list(token_ids) if token_ids is not None else None, "model_hash": model_hash}
        payload.update({key: value for key, value in optional.items() if value is not None})
        if final:
            payload["final"] = True
        return self.post_event(trace_id, "completion", payload, granularity=granularity)

    def send_activations(self, trace_id: str, envelope: dict[str, Any], *,
                         granularity: str | None = None) -> dict[str, Any]:
        """Post a `CapturePipeline.flush()` envelope (or an inline activations payload) as is."""
        return self.post_event(trace_id, "activations", envelope, granularity=granularity)

    def finalize(self, trace_id: str, *, granularity: str | None = None) -> dict[str, Any]:
        return self.post_event(trace_id, "finalize", {}, granularity=granularity)

    def get_trace(self, trace_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/traces/{trace_id}")[1]

    def get_graph(self, trace_id: str) -> tuple[int, dict[str, Any]]:
        """`(status_code, body)`: 200 with the HIF document, or 202 with the trace status while it runs."""
        return self.request("GET", f"/v1/traces/{trace_id}/graph")

    def wait_for_graph(self, trace_id: str, *, timeout_s: float = 120.0, poll_s: float = 0.5) -> dict[str, Any]:
        """Poll until the graph is ready; IngestError when the trace fails or the deadline passes."""
        deadline = time.monotonic() + timeout_s
        while True:
            status, body = self.get_graph(trace_id)
            if status == 200:
                return body
            if body.get("status") in ("failed", "canceled"):
                raise IngestError(f"trace {trace_id} ended {body.get('status')}: {body.get('error')}",
                                  status=status, body=body)
            if time.monotonic() > deadline:
                raise IngestError(f"trace {trace_id} not explained within {timeout_s}s (last: {body})",
                                  status=status, body=body)
            time.sleep(poll_s)

    def backoff_delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Full jitter: uniform(0, min(max, base * 2**attempt)); a server's Retry-After is a floor."""
        delay = self._random.uniform(0.0, min(self.backoff_max_s, self.backoff_s * 2 ** attempt))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_after_max_s))
        return delay

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        """`(status, decoded body)` of any API call, with this client's retries; IngestError for other 4xx.

        `headers` are sent too: an `X-Request-ID` names the request in the service's logs, workers' included."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {**(headers or {}), "Authorization": f"Api-Key {self.api_key}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        url = self.base_url + path
        attempt = 0
        while True:
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            retry_after = None
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return response.status, _decode(response.read())
            except urllib.error.HTTPError as exc:
                payload = _decode(exc.read())
                if exc.code not in RETRY_STATUSES or attempt >= self.max_retries:
                    raise IngestError(f"{method} {path} -> {exc.code}: {payload}", status=exc.code,
                                      body=payload) from None
                retry_after = _retry_after(exc.headers.get("Retry-After"))
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if attempt >= self.max_retries:
                    raise IngestError(f"{method} {path} failed after {attempt + 1} attempts: {exc}") from None
            self._sleep(self.backoff_delay(attempt, retry_after))
            attempt += 1


def _decode(raw: bytes) -> dict[str, Any]:
    try:
        decoded = json.loads(raw or b"{}")
    except ValueError:
        return {"raw": raw.decode(errors="replace")[:2000]}
    return decoded if isinstance(decoded, dict) else {"data": decoded}


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def capture_and_send(model: Any, tokenizer: Any, prompt: str, *, client: IngestClient, trace_id: str,
                     layers: Sequence[int] | None, max_new_tokens: int = 32, granularity: str = "token",
                     pipeline: Any = None, model_name: str | None = None,
                     generation: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one prompt with capture on and post completion → activations → finalize.

    Causal LMs generate greedily (`max_new_tokens`; `generation` adds `generate` arguments, such as
    `no_repeat_ngram_size`, or `do_sample` after a `torch.manual_seed`) from `input_ids` and `attention_mask` only
    (a BERT tokenizer's `token_type_ids` would shift a GPT-2's embeddings); encoders (BERT-style, no `generate`)
    run one forward pass and the "completion" text is the prompt itself. `tokens`/`token_ids` in the completion event cover the whole
    sequence, so shard token index i is `tokens[i]` (the last generated token has no row: it is never fed back).
    Without `pipeline`, one is built from `CaptureConfig.from_env` with a `RedisStore` (CAPTURE_REDIS_URL) and
    closed afterwards. Returns `{"trace_id", "envelope", "text", "tokens", "responses"}`.
    """
    import torch

    from .hooks import CaptureConfig, CapturePipeline, RedisStore, attach, detach, model_hash

    owned = pipeline is None
    name = model_name or getattr(getattr(model, "config", None), "name_or_path", "") or type(model).__name__
    if owned:
        cfg = CaptureConfig.from_env(model_name=name, model_hash=model_hash(model), layers=layers)
        pipeline = CapturePipeline(cfg, store=RedisStore.from_config(cfg))
    try:
        device = next(model.parameters()).device
        inputs = tokenizer(prompt, return_tensors="pt").to(device)
        prompt_len = int(inputs["input_ids"].shape[1])
        generative = callable(getattr(model, "can_generate", None)) and model.can_generate()
        pipeline.start_trace(trace_id, params={"max_new_tokens": max_new_tokens if generative else 0,
                                               "prompt_tokens": prompt_len})
        handle = attach(model, pipeline, trace_id, layers)
        try:
            with torch.no_grad():
                if generative:
                    causal = {key: inputs[key] for key in ("input_ids", "attention_mask") if key in inputs}
                    options = {"do_sample": False, **(generation or {})}
                    sequence = model.generate(**causal, max_new_tokens=max_new_tokens, **options)[0]
                else:
                    model(**inputs)
                    sequence = inputs["input_ids"][0]
        finally:
            detach(handle)
        envelope = pipeline.flush(trace_id)
    finally:
        if owned:
            pipeline.close()
    token_ids = [int(t) for t in sequence.tolist()]
    text = tokenizer.decode(token_ids[prompt_len:], skip_special_tokens=True) if generative else prompt
    tokens = [tokenizer.decode([t]) for t in token_ids]
    responses = send_capture(client, trace_id, cfg=pipeline.cfg, prompt=prompt, text=text, token_ids=token_ids,
                             tokens=tokens, envelope=envelope, granularity=granularity)
    return {"trace_id": trace_id, "envelope": envelope, "text": text, "tokens": tokens, "responses": responses}


def send_capture(client: IngestClient, trace_id: str, *, cfg: Any, prompt: str, text: str, token_ids: list[int],
                 tokens: list[str], envelope: dict[str, Any], granularity: str = "token") -> dict[str, Any]:
    """Post one captured response: completion (the whole sequence's tokens), its activations envelope, finalize.

    `cfg` is the capture pipeline's `CaptureConfig` (model name and hash); returns each event's response body.
    """
    responses = {"completion": client.send_completion(trace_id, model=cfg.model_name, model_hash=cfg.model_hash,
                                                      prompt=prompt, text=text, tokens=tokens, token_ids=token_ids,
                                                      granularity=granularity)}
    if envelope["shards"]:
        responses["activations"] = client.send_activations(trace_id, envelope, granularity=granularity)
    responses["finalize"] = client.finalize(trace_id, granularity=granularity)
    return responses
