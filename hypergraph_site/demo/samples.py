"""The bundled sample: a seeded SAELens-format dictionary and traces whose activations are built from it.

Activations are planted: each token's residual is `b_dec + Σ c_f W_dec[f] + noise` for a few features of the
sentence's topic, so the ReLU encoder recovers exactly those features and a reader of the graph can check them.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from explainer.text import tokenize
from sae.config import dictionary_layer_folder

D_IN = 384
D_SAE = 4096
LAYER = 6
NAMESPACES = ("Biology", "Finance", "Code", "Geography", "Weather", "Music", "Sport", "Cooking")

SAMPLE_TRACES = (
    ("sample-biology", "sentence", "f16-base64",
     "Cells divide by mitosis. The nucleus holds the genome. Enzymes speed up reactions in the cell."),
    ("sample-finance", "sentence", "json",
     "Rates rose again this quarter. Bond prices fell as yields climbed. Investors moved into cash."),
    ("sample-code", "token", "f16-base64",
     "The function returns a list. Each loop appends one item."),
)
TOPIC_OF = {"sample-biology": "Biology", "sample-finance": "Finance", "sample-code": "Code"}


@dataclass(frozen=True)
class SampleDictionary:
    W_enc: np.ndarray  # [d_in, d_sae]
    b_enc: np.ndarray  # [d_sae]
    W_dec: np.ndarray  # [d_sae, d_in]
    b_dec: np.ndarray  # [d_in]
    labels: dict[int, str]


def make_dictionary(seed: int = 0) -> SampleDictionary:
    """A tied dictionary with unit-norm decoder rows; feature f belongs to namespace `f % len(NAMESPACES)`."""
    rng = np.random.default_rng(seed)
    W_dec = rng.standard_normal((D_SAE, D_IN)).astype(np.float32)
    W_dec /= np.linalg.norm(W_dec, axis=1, keepdims=True)
    b_dec = (0.1 * rng.standard_normal(D_IN)).astype(np.float32)
    labels = {f: f"{NAMESPACES[f % len(NAMESPACES)]}: concept {f // len(NAMESPACES)}" for f in range(D_SAE)}
    return SampleDictionary(W_enc=np.ascontiguousarray(W_dec.T), b_enc=np.full(D_SAE, -0.15, np.float32),
                            W_dec=W_dec, b_dec=b_dec, labels=labels)


def write_dictionary(dict_root: Path, name: str = "sample", seed: int = 0) -> Path:
    """Write the sample dictionary (SAELens format, plus labels.json) and return its layer folder."""
    from sae.testing import write_saelens_dictionary

    dictionary = make_dictionary(seed)
    folder = dictionary_layer_folder(dict_root, name, LAYER)
    write_saelens_dictionary(folder, dictionary.W_enc, dictionary.b_enc, dictionary.W_dec, dictionary.b_dec,
                             cfg_overrides={"hook_name": f"blocks.{LAYER}.hook_resid_post",
                                           "activation_convention": "hf_raw"})
    (folder / "labels.json").write_text(json.dumps({str(k): v for k, v in dictionary.labels.items()}))
    return folder


def planted_activations(dictionary: SampleDictionary, topic: str, count: int, seed: int) -> np.ndarray:
    """`[count, d_in]` residuals, each the sum of 3–5 features of `topic` with coefficients in [1.5, 4]."""
    rng = np.random.default_rng(seed)
    topic_features = np.arange(NAMESPACES.index(topic), D_SAE, len(NAMESPACES))[:48]
    acts = np.tile(dictionary.b_dec, (count, 1))
    for row in acts:
        chosen = rng.choice(topic_features, size=rng.integers(3, 6), replace=False)
        row += rng.uniform(1.5, 4.0, size=len(chosen)).astype(np.float32) @ dictionary.W_dec[chosen]
    acts += 0.02 * rng.standard_normal(acts.shape).astype(np.float32)
    return acts.astype(np.float32)


def _activation_payload(acts: np.ndarray, encoding: str) -> dict:
    if encoding == "json":
        data = np.round(acts.astype(np.float64), 5).tolist()
    else:
        data = base64.b64encode(acts.astype("<f2").tobytes()).decode()
    return {"layer": LAYER, "token_offset": 0, "encoding": encoding, "shape": list(acts.shape), "data": data,
            "convention": "hf_raw"}


def sample_events(seed: int = 0) -> list[dict]:
    """The `/ingest` events of every sample trace, in the order a client would send them."""
    dictionary = make_dictionary(seed)
    events = []
    for n, (trace_id, granularity, encoding, text) in enumerate(SAMPLE_TRACES):
        tokens = tokenize(text)
        acts = planted_activations(dictionary, TOPIC_OF[trace_id], len(tokens), seed + n + 1)
        events += [
            {"trace_id": trace_id, "event_type": "completion", "granularity": granularity,
             "payload": {"model": "sample-model", "model_hash": "sha256:sample", "prompt": "Explain briefly.",
                         "text": text, "tokens": tokens}},
            {"trace_id": trace_id, "event_type": "activations", "payload": _activation_payload(acts, encoding)},
            {"trace_id": trace_id, "event_type": "finalize", "payload": {}},
        ]
    return events


def write_sample(dict_root: Path, traces_path: Path, seed: int = 0) -> tuple[Path, Path]:
    folder = write_dictionary(dict_root, seed=seed)
    traces_path.parent.mkdir(parents=True, exist_ok=True)
    traces_path.write_text("".join(json.dumps(e) + "\n" for e in sample_events(seed)))
    return folder, traces_path
