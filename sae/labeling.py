"""Label every feature of a trained dictionary from its top-activating token contexts in the training corpus.

A label is `Namespace: detail`. The namespace (the grouping key for circuit supernodes) is the kind of token the
feature fires on most (Keyword, Punctuation, Number, Subword, Function word, Word); the detail names its commonest
tokens and, when most of its contexts come from one documentation topic, that topic. Deterministic: the corpus, the
model and the dictionary fix the result. The contexts themselves go to `feature_contexts.json` for the UI.
"""

from __future__ import annotations

import json
import keyword
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sae.config import dictionary_layer_folder
from sae.dictionary import load_dictionary
from sae.labels import save_labels
from sae.training import ActivationSource, Corpus

CONTEXTS_FILE = "feature_contexts.json"
FUNCTION_WORDS = frozenset(
    "a an the of to in on at by for from with and or not is are was be been it its this that these those as if then "
    "else when which who what there their they you your can may must will would should do does".split()
)


@dataclass(frozen=True)
class LabelConfig:
    dict_root: Path = field(default_factory=lambda: Path("var/dicts"))
    name: str = "minilm-l6"
    layer: int = 3
    max_tokens: int = 60_000
    seq_len: int = 128
    top_contexts: int = 8
    before: int = 8
    after: int = 3

    @property
    def folder(self) -> Path:
        return dictionary_layer_folder(self.dict_root, self.name, self.layer)


@dataclass
class LabelResult:
    folder: Path
    labelled: int
    dead: int
    seconds: float


def top_examples(indices: np.ndarray, values: np.ndarray, d_sae: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """From sparse codes indices/values [N, k], each feature's n strongest token rows.

    Returns rows int64 [d_sae, n] (-1 where a feature fired fewer than n times) and their values float32 [d_sae, n].
    """
    T, k = indices.shape
    feat, val = indices.ravel(), values.ravel()
    tok = np.repeat(np.arange(T), k)
    live = val > 0
    feat, val, tok = feat[live], val[live], tok[live]
    order = np.lexsort((tok, -val, feat))
    feat, val, tok = feat[order], val[order], tok[order]
    first = np.searchsorted(feat, feat, side="left")
    rank = np.arange(feat.size) - first
    keep = rank < n
    rows = np.full((d_sae, n), -1, np.int64)
    vals = np.zeros((d_sae, n), np.float32)
    rows[feat[keep], rank[keep]] = tok[keep]
    vals[feat[keep], rank[keep]] = val[keep]
    return rows, vals


def token_class(token: str) -> str:
    word = token[2:] if token.startswith("##") else token
    if token.startswith("##"):
        return "Subword"
    if keyword.iskeyword(word) or word in ("none", "true", "false", "def", "lambda"):
        return "Keyword"
    if word.isdigit():
        return "Number"
    if not any(c.isalnum() for c in word):
        return "Punctuation"
    if word.lower() in FUNCTION_WORDS:
        return "Function word"
    return "Word"


def label_for(tokens: list[str], topics: list[str]) -> str:
    """`Namespace: detail` for one feature from the tokens (and topics) of its top contexts."""
    if not tokens:
        return "Dead: never fires on the corpus"
    namespace = Counter(token_class(t) for t in tokens).most_common(1)[0][0]
    common = [t for t, _ in Counter(tokens).most_common(3)]
    detail = ", ".join(common)
    topic, count = Counter(topics).most_common(1)[0]
    if count >= 0.6 * len(topics):
        detail += f" (in {topic})"
    return f"{namespace}: {detail}"


def context_text(corpus: Corpus, row: int, before: int, after: int) -> str:
    """The tokens around `row` within its own chunk, the firing token in «guillemets»."""
    lo, hi = max(0, row - before), min(len(corpus.tokens), row + after + 1)
    parts = []
    for r in range(lo, hi):
        if corpus.chunk[r] != corpus.chunk[row]:
            continue
        tok = corpus.tokens[r]
        text = f"«{tok}»" if r == row else tok
        if tok.startswith("##") and parts:
            parts[-1] += text[2:] if r != row else f"«{tok[2:]}»"
        else:
            parts.append(text)
    return " ".join(parts)


def label_features(cfg: LabelConfig, source: ActivationSource, *, show_progress: bool = True,
                   echo: Callable[[str], None] = print) -> LabelResult:
    """Capture the corpus, decode it with the dictionary's fast top-k, and write labels.json + contexts."""
    from rich.progress import Progress

    started = time.perf_counter()
    dictionary = load_dictionary(cfg.folder)
    with Progress(disable=not show_progress) as bar:
        task = bar.add_task(f"capture {source.model_name} activations", total=cfg.max_tokens)
        corpus = source.capture(cfg.layer, cfg.max_tokens, cfg.seq_len, lambda n: bar.advance(task, n))
        bar.update(task, completed=cfg.max_tokens)
    k = dictionary.k or 64
    indices, values = dictionary.topk(corpus.acts, k)
    rows, vals = top_examples(indices, values, dictionary.d_sae, cfg.top_contexts)
    labels: dict[int, str] = {}
    contexts: dict[str, list[dict[str, object]]] = {}
    for f in range(dictionary.d_sae):
        hits = rows[f][rows[f] >= 0]
        labels[f] = label_for([corpus.tokens[r] for r in hits], [corpus.docs[corpus.doc[r]] for r in hits])
        if hits.size:
            contexts[str(f)] = [
                {"text": context_text(corpus, int(r), cfg.before, cfg.after), "activation": round(float(v), 4),
                 "topic": corpus.docs[corpus.doc[r]]}
                for r, v in zip(hits, vals[f][: hits.size])
            ]
    save_labels(cfg.folder, labels)
    (cfg.folder / CONTEXTS_FILE).write_text(json.dumps(contexts, ensure_ascii=False))
    dead = sum(1 for v in labels.values() if v.startswith("Dead:"))
    seconds = time.perf_counter() - started
    namespaces = Counter(v.split(":", 1)[0] for v in labels.values())
    echo(f"labelled {len(labels)} features of {cfg.folder} in {seconds:.1f}s ({dead} never fire); namespaces: "
         + ", ".join(f"{ns} {n}" for ns, n in namespaces.most_common()))
    return LabelResult(folder=cfg.folder, labelled=len(labels), dead=dead, seconds=seconds)
