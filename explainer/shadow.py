"""The worker's shadow model (`SHADOW_MODEL`): loaded once per process, and matched to each trace before use.

Attribution through the model needs the tokens fed at every activation row and the token emitted after it. The
capture client (`ingest.client.capture_and_send`) sends the whole sequence's ids, one more than there are rows (the
last generated token is never fed back); those are used as they are. Only when a completion carries no such ids (none,
or one per row, which are targets already shifted by the client) is the text re-tokenized with the shadow model's own
tokenizer: the prompt followed by the text, then the text alone, and the first that gives exactly one id more than
there are rows is used. Whether the shadow is the trace's model is checked by recomputing the captured residuals
(`attribution.shadow.mismatch`). When nothing lines up, the trace keeps the reading through the unembedding and says
why.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache

import numpy as np
from django.conf import settings

import attribution

from .trace_data import Completion

_lock = threading.Lock()
_loaded: dict[str, "Shadow"] = {}


@dataclass(frozen=True)
class Shadow:
    """The loaded model with its tokenizer (None if the folder has none), vocabulary size and context length."""

    model: "attribution.TorchShadow"
    tokenizer: object | None
    vocab_size: int
    max_positions: int | None  # the longest sequence the model takes, when its config says


def shadow_model() -> Shadow | None:
    """The configured shadow model, loaded on first use in this process (CUDA when available), or None if unset.

    Under a lock, so the threads of a worker share one copy instead of each loading its own."""
    path = settings.SHADOW_MODEL
    if not path:
        return None
    with _lock:
        if path not in _loaded:
            _loaded[path] = _load(path)
        return _loaded[path]


@cache
def verify_config() -> "attribution.VerifyConfig":
    return attribution.VerifyConfig.from_env()


def _load(path: str) -> Shadow:
    from transformers import AutoTokenizer

    model = attribution.load_shadow(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError):
        tokenizer = None
    config = model.lm.config
    positions = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    return Shadow(model=model, tokenizer=tokenizer, vocab_size=int(config.vocab_size),
                  max_positions=int(positions) if positions else None)


def shadow_inputs(shadow: Shadow, *, completion: Completion,
                  layers: list["attribution.LayerFeatures"]) -> tuple["attribution.ModelInputs | None", str | None]:
    """The shadow pass's ids for a trace's `layers`, or None and why the shadow model cannot explain it."""
    count = layers[0].n_positions
    if shadow.max_positions is not None and count > shadow.max_positions:
        return None, f"the trace's {count} positions exceed the shadow model's context of {shadow.max_positions}"
    ids = completion.token_ids if completion.token_ids and len(completion.token_ids) == count + 1 else None
    if ids is None:
        ids = _retokenized(shadow, completion, count)
    if ids is None:
        return None, (f"the completion has no token ids for its {count} rows and the shadow model's tokenizer does "
                      f"not give {count + 1} tokens for its prompt and text")
    sequence = np.asarray(ids, dtype=np.int64)
    if sequence.min() < 0 or sequence.max() >= shadow.vocab_size:
        return None, f"token ids lie outside the shadow model's vocabulary of {shadow.vocab_size}"
    inputs = attribution.ModelInputs(input_ids=sequence[:count], targets=sequence[1:])
    why_not = attribution.shadow_mismatch(shadow.model, inputs, layers)
    return (None, why_not) if why_not else (inputs, None)


def _retokenized(shadow: Shadow, completion: Completion, count: int) -> list[int] | None:
    if shadow.tokenizer is None:
        return None
    for text in (completion.prompt + completion.text, completion.text):
        ids = shadow.tokenizer(text)["input_ids"]
        if len(ids) == count + 1:
            return list(ids)
    return None
