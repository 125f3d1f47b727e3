"""The model server's HTTP side: OpenAI-compatible `/v1/completions` and `/v1/chat/completions`, streaming or not.

Supported: `prompt` (one string, or one list of token ids) or `messages`, `max_tokens`, `temperature`, `seed`, `presence_penalty`,
`frequency_penalty`, `stream`, and log-probabilities
(`logprobs` with up to 5 alternatives on completions; `logprobs` + `top_logprobs` ≤ 5 on chat). Anything else a
client sends is ignored, except what would change the answer in a way this server cannot honour (`n` > 1, `stop`,
`suffix`, `best_of`, `tools`), which is refused with a 400, as is every out-of-range value; every size has a
maximum. `echo: true` with `max_tokens: 0` scores a prompt instead: the log-probability of each of its tokens given
the ones before (what a surrogate reads P(target | prompt) from, exactly); scoring is not captured. Every answer carries `X-Trace-Id`: the sidecar trace it is explained under, the caller's own when it sent
one in that header (at most 128 of `A-Z a-z 0-9 . _ : -`), else a new one.
"""
from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .model_server import Answer, ContextExceeded, Generation, ModelServer, Step, new_trace_id

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
MAX_TOKENS = 256
MAX_PROMPT_CHARS = 32 * 1024
MAX_MESSAGES = 64
MAX_TOP_LOGPROBS = 5
DEFAULT_MAX_TOKENS = 16
UNSUPPORTED = ("stop", "suffix", "best_of", "tools", "functions", "tool_choice", "logit_bias")
ROLE_NAMES = {"system": "System", "user": "User", "assistant": "Assistant"}
TRACE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestError(ValueError):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def _number(body: dict, name: str, default: float, low: float, high: float, *, integer: bool) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise RequestError(f"'{name}' must be {'an integer' if integer else 'a number'}", name)
    if not low <= value <= high:
        raise RequestError(f"'{name}' must be between {low} and {high}, got {value}", name)
    return value


def _common(body: Any, *, scoring: bool = False) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object")
    for name in UNSUPPORTED:
        if body.get(name) not in (None, False, [], ""):
            raise RequestError(f"'{name}' is not supported by this server", name)
    if _number(body, "n", 1, 1, 1, integer=True) != 1:
        raise RequestError("only n=1 is supported", "n")
    fewest = 0 if scoring else 1
    return {"max_tokens": _number(body, "max_tokens", DEFAULT_MAX_TOKENS, fewest, MAX_TOKENS, integer=True),
            "temperature": float(_number(body, "temperature", 0.0, 0.0, 2.0, integer=False)),
            "presence_penalty": float(_number(body, "presence_penalty", 0.0, -2.0, 2.0, integer=False)),
            "frequency_penalty": float(_number(body, "frequency_penalty", 0.0, -2.0, 2.0, integer=False)),
            "seed": _number(body, "seed", None, 0, 2**63 - 1, integer=True)}


def completion_request(body: Any) -> tuple[Generation, bool]:
    """The generation (or, with `echo`, the scoring), and whether log-probabilities were asked for (`logprobs`: how
    many alternatives, 0–5)."""
    echo = isinstance(body, dict) and body.get("echo", False)
    if not isinstance(echo, bool):
        raise RequestError("'echo' must be true or false", "echo")
    settings = _common(body, scoring=echo)
    if echo and (settings["max_tokens"] != 0 or body.get("stream")):
        raise RequestError("'echo' is supported for scoring only: with max_tokens 0 and no stream", "echo")
    if not echo and settings["max_tokens"] == 0:
        raise RequestError("'max_tokens' must be at least 1 unless 'echo' scores the prompt", "max_tokens")
    top = _number(body, "logprobs", 0, 0, MAX_TOP_LOGPROBS, integer=True)
    return Generation(prompt=_prompt(body.get("prompt")), top_logprobs=top, echo=echo, **settings), \
        body.get("logprobs") is not None


def _prompt(prompt: Any) -> str | tuple[int, ...]:
    """One prompt: a string, or a list of token ids (what a surrogate sends, so masked prompts stay exact)."""
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        if len(prompt) > MAX_TOKENS * 16:
            raise RequestError(f"'prompt' has more than {MAX_TOKENS * 16} tokens", "prompt")
        return tuple(prompt)
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise RequestError("'prompt' must be one non-empty string or one list of token ids", "prompt")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise RequestError(f"'prompt' is longer than {MAX_PROMPT_CHARS} characters", "prompt")
    return prompt


def chat_request(body: Any) -> tuple[Generation, bool]:
    """The generation, and whether log-probabilities were asked for (chat asks with `logprobs: true`)."""
    if isinstance(body, dict) and body.get("echo"):
        raise RequestError("'echo' is not supported on chat completions", "echo")
    settings = _common(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not 0 < len(messages) <= MAX_MESSAGES:
        raise RequestError(f"'messages' must be a list of 1 to {MAX_MESSAGES} messages", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLE_NAMES \
                or not isinstance(message.get("content"), str):
            raise RequestError(f"messages[{i}] needs a role ({', '.join(ROLE_NAMES)}) and string content",
                               f"messages[{i}]")
    prompt = chat_prompt(messages)
    if len(prompt) > MAX_PROMPT_CHARS:
        raise RequestError(f"the messages are longer than {MAX_PROMPT_CHARS} characters", "messages")
    wants = body.get("logprobs", False)
    if not isinstance(wants, bool):
        raise RequestError("'logprobs' must be true or false", "logprobs")
    top = _number(body, "top_logprobs", 0, 0, MAX_TOP_LOGPROBS, integer=True)
    if top and not wants:
        raise RequestError("'top_logprobs' needs 'logprobs': true", "top_logprobs")
    return Generation(prompt=prompt, top_logprobs=top, **settings), wants


def chat_prompt(messages: list[dict[str, str]]) -> str:
    """The plain-text template a base model without a chat template continues: `Role: content` blocks, then
    `Assistant:` for the answer."""
    blocks = [f"{ROLE_NAMES[m['role']]}: {m['content'].strip()}" for m in messages]
    return "\n\n".join([*blocks, "Assistant:"])


def _completion_logprobs(steps: list[Step], offset: int) -> dict[str, Any]:
    offsets, position = [], offset
    for step in steps:
        offsets.append(position)
        position += len(step.text)
    return {"tokens": [s.text for s in steps], "token_logprobs": [s.logprob for s in steps],
            "top_logprobs": [dict(s.top) if s.logprob is not None else None for s in steps], "text_offset": offsets}


def _chat_logprobs(steps: list[Step]) -> dict[str, Any]:
    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    return {"content": [{**entry(s.text, s.logprob), "top_logprobs": [entry(t, lp) for t, lp in s.top]}
                        for s in steps]}


def _usage(answer: Answer) -> dict[str, int]:
    return {"prompt_tokens": answer.prompt_tokens, "completion_tokens": len(answer.steps),
            "total_tokens": answer.prompt_tokens + len(answer.steps)}


class OpenAIHandler(BaseHTTPRequestHandler):
    server: "OpenAIServer"
    protocol_version = "HTTP/1.0"  # the connection closes after each answer, which ends a stream cleanly

    def do_GET(self) -> None:
        if self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": self.server.model.name, "object": "model",
                                                          "owned_by": "hypergraph-sidecar"}]})
        elif self.path == "/healthz":
            self._json(200, {"status": "ok"})
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        try:
            body = self._body()
            if self.path == "/v1/completions":
                (generation, logprobs), chat = completion_request(body), False
            elif self.path == "/v1/chat/completions":
                (generation, logprobs), chat = chat_request(body), True
            else:
                return self._error(404, f"no route {self.path}")
            self.server.model.check(generation)
            answer = Answer(trace_id=self._trace_id())
        except (RequestError, ContextExceeded) as exc:
            return self._error(400, str(exc), getattr(exc, "param", None))
        if generation.echo:
            return self._json(200, self._scored(self.server.model.score(generation), logprobs))
        steps = self.server.model.generate(generation, answer)
        if body.get("stream") is True:
            self._stream(steps, answer, chat, logprobs)
        else:
            collected = list(steps)
            self._json(200, self._whole(answer, collected, chat, logprobs), trace_id=answer.trace_id)

    def _whole(self, answer: Answer, steps: list[Step], chat: bool, logprobs: bool) -> dict[str, Any]:
        text = "".join(s.text for s in steps)
        choice: dict[str, Any] = {"index": 0, "finish_reason": answer.finish_reason}
        if chat:
            choice.update(message={"role": "assistant", "content": text},
                          logprobs=_chat_logprobs(steps) if logprobs else None)
        else:
            choice.update(text=text, logprobs=_completion_logprobs(steps, 0) if logprobs else None)
        return {**self._head(answer, chat, chunk=False), "choices": [choice], "usage": _usage(answer)}

    def _scored(self, steps: list[Step], logprobs: bool) -> dict[str, Any]:
        """The prompt echoed with its tokens' log-probabilities (the first token's is null: nothing precedes it)."""
        text = "".join(s.text for s in steps)
        choice = {"index": 0, "text": text, "finish_reason": "length",
                  "logprobs": _completion_logprobs(steps, 0) if logprobs else None}
        usage = {"prompt_tokens": len(steps), "completion_tokens": 0, "total_tokens": len(steps)}
        return {"id": f"cmpl-{new_trace_id()}", "object": "text_completion", "created": int(time.time()),
                "model": self.server.model.name, "choices": [choice], "usage": usage}

    def _stream(self, steps: Iterator[Step], answer: Answer, chat: bool, logprobs: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Trace-Id", answer.trace_id)
        self.end_headers()
        head = self._head(answer, chat, chunk=True)
        offset = 0
        try:
            if chat:
                self._event({**head, "choices": [{"index": 0, "delta": {"role": "assistant"}, "logprobs": None,
                                                  "finish_reason": None}]})
            for step in steps:
                if chat:
                    choice = {"delta": {"content": step.text}, "logprobs": _chat_logprobs([step]) if logprobs else None}
                else:
                    choice = {"text": step.text,
                              "logprobs": _completion_logprobs([step], offset) if logprobs else None}
                offset += len(step.text)
                self._event({**head, "choices": [{"index": 0, **choice, "finish_reason": None}]})
            last = {"delta": {}} if chat else {"text": ""}
            self._event({**head, "choices": [{"index": 0, **last, "logprobs": None,
                                              "finish_reason": answer.finish_reason}], "usage": _usage(answer)})
            self.wfile.write(b"data: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError):
            steps.close()  # the client left: stop decoding (the capture of what was generated is still sent)

    def _trace_id(self) -> str:
        given = self.headers.get("X-Trace-Id")
        if given is None:
            return new_trace_id()
        if not TRACE_ID.fullmatch(given):
            raise RequestError("X-Trace-Id must be 1 to 128 of A-Z a-z 0-9 . _ : -", "X-Trace-Id")
        return given

    def _head(self, answer: Answer, chat: bool, *, chunk: bool) -> dict[str, Any]:
        kind = ("chat.completion.chunk" if chunk else "chat.completion") if chat else "text_completion"
        return {"id": f"{'chatcmpl' if chat else 'cmpl'}-{answer.trace_id}", "object": kind,
                "created": int(time.time()), "model": self.server.model.name}

    def _event(self, payload: dict[str, Any]) -> None:
        self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
        self.wfile.flush()

    def _body(self) -> Any:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise RequestError("Content-Length is not a number") from None
        if length > MAX_BODY_BYTES:
            raise RequestError(f"the body is larger than {MAX_BODY_BYTES} bytes")
        try:
            return json.loads(self.rfile.read(length) or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise RequestError(f"the body is not valid JSON: {exc}") from None

    def _json(self, status: int, payload: dict[str, Any], trace_id: str | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if trace_id:
            self.send_header("X-Trace-Id", trace_id)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, param: str | None = None) -> None:
        kind = "invalid_request_error" if status == 400 else "not_found_error"
        self._json(status, {"error": {"message": message, "type": kind, "param": param, "code": None}})

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)


class OpenAIServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], model: ModelServer) -> None:
        super().__init__(address, OpenAIHandler)
        self.model = model
