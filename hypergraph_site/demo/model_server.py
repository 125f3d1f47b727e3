"""A reference model server: a trained language model answering with the capture hooks on, sending every response
to the sidecar without making its client wait for that.

`ModelServer.generate` decodes token by token with the model's KV cache (greedy at temperature 0, else sampled from
the tempered softmax, seeded when the request gives a seed; OpenAI's presence and frequency penalties lower the
logits of tokens already generated, which keeps a small model's greedy answer from looping), yielding each token with its log-probability and the
top alternatives as it goes, so a streaming answer streams for real. The forward hooks record the residual stream
of the captured layers into the capture pipeline (shards in Redis) while it decodes; when the answer ends, the
shards are flushed and a background sender posts completion, activations and finalize to the sidecar
(`ingest.client.send_capture`, which retries). A sidecar that is down costs the model server nothing but a log line.

One answer is decoded at a time (the hooks of one trace are on the shared model while it runs); HTTP connections
are served concurrently (`openai_http`).
"""
from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Generation:
    """What to generate: the prompt (chat messages already templated) and the decoding settings."""

    prompt: str | tuple[int, ...]  # text, or token ids
    max_tokens: int
    temperature: float = 0.0
    top_logprobs: int = 0
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    echo: bool = False  # score the prompt (max_tokens 0) instead of generating


@dataclass(frozen=True)
class Step:
    """One generated token: its id, the text it adds to the answer, its log-probability and the top alternatives."""

    token_id: int
    text: str
    logprob: float | None  # None for a scored prompt's first token: nothing precedes it
    top: list[tuple[str, float]] = field(default_factory=list)


class ContextExceeded(ValueError):
    """The prompt and the tokens asked for do not fit the model's context."""


@dataclass
class Answer:
    """Filled in while `generate` runs: the trace id the response is explained under, and why decoding stopped."""

    trace_id: str
    prompt_tokens: int = 0
    finish_reason: str = "length"
    steps: list[Step] = field(default_factory=list)


class ModelServer:
    """The model, its tokenizer, the capture pipeline and the sender to the sidecar (None: capture off)."""

    def __init__(self, folder: Path, *, layers: list[int], sidecar: Any | None, redis_url: str,
                 granularity: str = "token") -> None:
        import torch

        from explainer.management.pydoc_gpt2 import load_model
        from ingest.hooks import CaptureConfig, CapturePipeline, RedisStore, model_hash

        torch.set_grad_enabled(False)
        self.name = Path(folder).name
        self.tokenizer, self.model = load_model(folder)
        self.context = int(getattr(self.model.config, "n_positions", 1024))
        self.layers, self.granularity = layers, granularity
        self.pipeline = None
        if sidecar is not None:
            cfg = CaptureConfig(self.name, model_hash(self.model), layers=layers, compress="f16-zstd")
            self.pipeline = CapturePipeline(cfg, store=RedisStore(redis_url, ttl_s=cfg.ttl_s))
        self._sender = _Sender(sidecar) if sidecar is not None else None
        self._lock = threading.Lock()

    def prompt_ids(self, prompt: str | tuple[int, ...]) -> list[int]:
        if isinstance(prompt, tuple):
            return list(prompt)
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    def prompt_text(self, prompt: str | tuple[int, ...]) -> str:
        return self.tokenizer.decode(list(prompt)) if isinstance(prompt, tuple) else prompt

    def check(self, request: Generation) -> int:
        """The prompt's token count; raises `ContextExceeded` when prompt + max_tokens do not fit the context, or a
        token id is not in the vocabulary."""
        ids = self.prompt_ids(request.prompt)
        count = len(ids)
        if count == 0:
            raise ContextExceeded("the prompt is empty")
        vocabulary = len(self.tokenizer)
        if not all(0 <= t < vocabulary for t in ids):
            raise ContextExceeded(f"the prompt has token ids outside the vocabulary (0 to {vocabulary - 1})")
        if count + request.max_tokens > self.context:
            raise ContextExceeded(f"the prompt's {count} tokens and max_tokens {request.max_tokens} exceed the "
                                  f"model's context of {self.context} tokens")
        return count

    def score(self, request: Generation) -> list[Step]:
        """Each prompt token with its log-probability given the tokens before it (and the top alternatives there):
        one forward pass, no sampling. Not captured: scoring is a surrogate's probe, not an answer to explain."""
        import torch

        ids = self.prompt_ids(request.prompt)
        with self._lock:
            logprobs = torch.log_softmax(self.model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
        steps = [Step(token_id=ids[0], text=self.tokenizer.decode([ids[0]]), logprob=None)]
        for position in range(1, len(ids)):
            row = logprobs[position - 1]
            steps.append(Step(token_id=ids[position], text=self.tokenizer.decode([ids[position]]),
                              logprob=round(float(row[ids[position]]), 6), top=self._top(row, request.top_logprobs)))
        return steps

    def generate(self, request: Generation, answer: Answer) -> Iterator[Step]:
        """Decode `request`, yielding each token as it is chosen; the response is captured under `answer.trace_id`
        and sent to the sidecar once decoding ends (also when the client stops reading early)."""
        import torch

        ids = self.prompt_ids(request.prompt)
        answer.prompt_tokens = len(ids)
        generator = torch.Generator().manual_seed(request.seed) if request.seed is not None else None
        with self._lock:
            handle = self._capture_start(answer.trace_id, len(ids), request.max_tokens)
            try:
                past, feed = None, torch.tensor([ids])
                for _ in range(request.max_tokens):
                    out = self.model(input_ids=feed, past_key_values=past, use_cache=True)
                    past = out.past_key_values
                    step = self._choose(out.logits[0, -1].float(), request, generator, answer)
                    answer.steps.append(step)
                    yield step
                    if step.token_id == self.tokenizer.eos_token_id:
                        answer.finish_reason = "stop"
                        break
                    feed = torch.tensor([[step.token_id]])
            finally:
                self._capture_end(handle, answer, ids, self.prompt_text(request.prompt))

    def _choose(self, logits: Any, request: Generation, generator: Any, answer: Answer) -> Step:
        """The next token, from the logits after the penalties; its log-probability is read from that same
        distribution (at temperature 1), the one the token was chosen from."""
        import torch

        if answer.steps and (request.presence_penalty or request.frequency_penalty):
            counts = torch.bincount(torch.tensor([s.token_id for s in answer.steps]), minlength=logits.shape[-1])
            logits = logits - request.presence_penalty * (counts > 0) - request.frequency_penalty * counts
        logprobs = torch.log_softmax(logits, dim=-1)
        if request.temperature > 0:
            probs = torch.softmax(logits / request.temperature, dim=-1)
            token = int(torch.multinomial(probs, 1, generator=generator))
        else:
            token = int(logprobs.argmax())
        top = self._top(logprobs, request.top_logprobs)
        generated = [s.token_id for s in answer.steps] + [token]
        so_far = self.tokenizer.decode([s.token_id for s in answer.steps], skip_special_tokens=True)
        text = self.tokenizer.decode(generated, skip_special_tokens=True)[len(so_far):]
        return Step(token_id=token, text=text, logprob=round(float(logprobs[token]), 6), top=top)

    def _top(self, logprobs: Any, count: int) -> list[tuple[str, float]]:
        if not count:
            return []
        values, indices = logprobs.topk(count)
        return [(self.tokenizer.decode([int(i)]), round(float(v), 6)) for v, i in zip(values, indices)]

    def _capture_start(self, trace_id: str, prompt_tokens: int, max_tokens: int) -> Any:
        if self.pipeline is None:
            return None
        from ingest.hooks import attach

        self.pipeline.start_trace(trace_id, params={"max_new_tokens": max_tokens, "prompt_tokens": prompt_tokens})
        return attach(self.model, self.pipeline, trace_id, self.layers)

    def _capture_end(self, handle: Any, answer: Answer, prompt_ids: list[int], prompt: str) -> None:
        if handle is None:
            return
        from ingest.hooks import detach

        detach(handle)
        envelope = self.pipeline.flush(answer.trace_id)
        token_ids = [*prompt_ids, *(s.token_id for s in answer.steps)]
        self._sender.submit(dict(
            trace_id=answer.trace_id, cfg=self.pipeline.cfg, prompt=prompt, envelope=envelope,
            text=self.tokenizer.decode([s.token_id for s in answer.steps], skip_special_tokens=True),
            token_ids=token_ids, tokens=[self.tokenizer.decode([t]) for t in token_ids], granularity=self.granularity))

    def close(self) -> None:
        if self._sender is not None:
            self._sender.close()
        if self.pipeline is not None:
            self.pipeline.close()


def new_trace_id() -> str:
    return f"srv-{uuid.uuid4().hex[:20]}"


class _Sender:
    """Posts captured responses to the sidecar from a thread of its own, in the order they were answered."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="sidecar-sender", daemon=True)
        self._thread.start()

    def submit(self, capture: dict[str, Any]) -> None:
        self._queue.put(capture)

    def close(self, timeout_s: float = 30.0) -> None:
        """Send what is queued (waiting at most `timeout_s`), then stop."""
        self._queue.put(None)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        from ingest.client import send_capture

        while (capture := self._queue.get()) is not None:
            try:
                send_capture(self.client, **capture)
            except Exception:  # noqa: BLE001 - a sidecar problem must never stop the model server
                log.exception("sending trace %s to the sidecar failed", capture["trace_id"])
