"""Train a TopK SAE on a real model's activations, seeded, and save it in SAELens format.

The activations come from an `ActivationSource` (a model and a corpus the caller binds: the `train_sae` command uses
MiniLM-L6 over CPython's bundled documentation); this module only knows rows of activations and where each came
from. The result is written in SAELens format (`architecture: topk`) to `<dict_root>/<name>/layer_<L>/`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sae.config import dictionary_layer_folder

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class TrainConfig:
    """Sizes default to the demo dictionary (minutes on 2 cores); `tiny()` is the seconds-long test configuration."""

    dict_root: Path = field(default_factory=lambda: Path("var/dicts"))
    name: str = "minilm-l6"
    layer: int = 3
    d_sae: int = 4096
    k: int = 32
    max_tokens: int = 60_000
    seq_len: int = 128
    steps: int = 800
    batch_size: int = 1024
    lr: float = 1e-3
    aux_k: int = 256
    aux_coef: float = 1 / 32
    dead_after_tokens: int = 50_000
    eval_fraction: float = 0.1
    seed: int = 0

    @classmethod
    def tiny(cls, dict_root: Path, **overrides: Any) -> TrainConfig:
        base = dict(dict_root=Path(dict_root), name="tiny", layer=1, d_sae=256, k=8, max_tokens=3000, seq_len=64,
                    steps=60, batch_size=256, dead_after_tokens=5000)
        base.update(overrides)
        return cls(**base)

    @property
    def folder(self) -> Path:
        return dictionary_layer_folder(self.dict_root, self.name, self.layer)


@dataclass
class Corpus:
    """Captured activations and where each row came from (for labelling): acts [N, d_model] float32."""

    acts: np.ndarray
    tokens: list[str]
    doc: np.ndarray        # [N] index into `docs`
    position: np.ndarray   # [N] token position within its chunk
    chunk: np.ndarray      # [N] chunk index (contexts never cross chunks)
    docs: list[str]


CaptureBatch = tuple[np.ndarray, list[str], np.ndarray, np.ndarray, np.ndarray]
"""One batch of a capture: acts [n, d_model], tokens [n], then doc, position and chunk indices [n] each."""


def corpus_collect(batches: Iterable[CaptureBatch], docs: list[str], max_tokens: int,
                   progress: Callable[[int], None] | None = None) -> Corpus:
    """The first `max_tokens` rows of a capture's batches as a `Corpus`. `batches` is consumed lazily and left as
    soon as enough rows have come, so a capture generator runs its model on no batch more than needed."""
    parts: list[CaptureBatch] = []
    total = 0
    for batch in batches:
        parts.append(batch)
        total += len(batch[1])
        if progress:
            progress(len(batch[1]))
        if total >= max_tokens:
            break
    n = min(total, max_tokens)
    acts, tokens, doc, position, chunk = zip(*parts)
    return Corpus(acts=np.concatenate(acts)[:n], tokens=[t for part in tokens for t in part][:n],
                  doc=np.concatenate(doc)[:n], position=np.concatenate(position)[:n],
                  chunk=np.concatenate(chunk)[:n], docs=docs)


@dataclass(frozen=True)
class ActivationSource:
    """Where training activations come from: any model's layer over any text, captured by `capture`.

    `capture(layer, max_tokens, seq_len, progress)` returns a `Corpus`; the names go into the dictionary's metadata
    (`model_name`, `hook_name`, `dataset_path`) and `convention` into its `activation_convention`, so a decoder can
    check that captured activations match what the dictionary was trained on.
    """

    model_name: str
    dataset: str
    hook_name: Callable[[int], str]
    convention: str
    capture: Callable[[int, int, int, Callable[[int], None] | None], Corpus]


@dataclass
class TrainResult:
    folder: Path
    fvu: float
    dead_fraction: float
    tokens: int
    seconds: float


def _fvu(x: Any, x_hat: Any) -> float:
    return float(((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def train_topk_sae(acts: np.ndarray, cfg: TrainConfig, progress: Callable[[int, float], None] | None = None
                   ) -> dict[str, np.ndarray]:
    """TopK SAE (Gao et al. 2024 recipe): unit-norm decoder rows, encoder initialised as the decoder's transpose,
    b_dec at the data mean, Adam, and an AuxK loss that lets latents dead for `dead_after_tokens` tokens model the
    residual so they come back to life. Returns float32 W_enc, b_enc, W_dec, b_dec."""
    import torch

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    x_all = torch.from_numpy(np.ascontiguousarray(acts, dtype=np.float32))
    n, d_in = x_all.shape
    W_dec = torch.randn(cfg.d_sae, d_in, generator=gen)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    W_dec = torch.nn.Parameter(W_dec)
    W_enc = torch.nn.Parameter(W_dec.detach().T.clone())
    b_enc = torch.nn.Parameter(torch.zeros(cfg.d_sae))
    b_dec = torch.nn.Parameter(x_all.mean(0).clone())
    opt = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], lr=cfg.lr)
    since_fired = torch.zeros(cfg.d_sae)
    scale = float(((x_all - x_all.mean(0)) ** 2).sum(1).mean())  # makes the loss an FVU, unit-free
    for step in range(cfg.steps):
        x = x_all[torch.randint(0, n, (cfg.batch_size,), generator=gen)]
        pre = (x - b_dec) @ W_enc + b_enc
        top = torch.topk(pre, cfg.k, dim=1)
        acts_k = torch.relu(top.values)
        # dense codes times the decoder: a GEMM, far cheaper than gathering [B, k, d_in] decoder rows
        x_hat = torch.zeros_like(pre).scatter(1, top.indices, acts_k) @ W_dec + b_dec
        loss = ((x - x_hat) ** 2).sum(1).mean() / scale
        fired = torch.zeros(cfg.d_sae, dtype=torch.bool)
        fired[top.indices[acts_k > 0]] = True
        since_fired = torch.where(fired, torch.zeros(()), since_fired + cfg.batch_size)
        dead = since_fired > cfg.dead_after_tokens
        if dead.any():
            aux = torch.topk(pre.masked_fill(~dead, -torch.inf), int(min(cfg.aux_k, int(dead.sum()))), dim=1)
            e_hat = torch.zeros_like(pre).scatter(1, aux.indices, torch.relu(aux.values)) @ W_dec
            residual = (x - x_hat).detach()
            loss = loss + cfg.aux_coef * ((residual - e_hat) ** 2).sum(1).mean() / scale
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            W_dec /= W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)
        if progress:
            progress(step, float(loss.detach()))
    return {"W_enc": W_enc.detach().numpy().copy(), "b_enc": b_enc.detach().numpy().copy(),
            "W_dec": W_dec.detach().numpy().copy(), "b_dec": b_dec.detach().numpy().copy()}


def evaluate(acts: np.ndarray, weights: dict[str, np.ndarray], k: int, batch: int = 4096) -> tuple[float, float]:
    """(fraction of variance unexplained, fraction of features that never fire) of a TopK SAE on `acts`."""
    fired = np.zeros(weights["W_enc"].shape[1], bool)
    err = 0.0
    for start in range(0, acts.shape[0], batch):
        x = acts[start:start + batch]
        pre = (x - weights["b_dec"]) @ weights["W_enc"] + weights["b_enc"]
        idx = np.argpartition(pre, pre.shape[1] - k, axis=1)[:, pre.shape[1] - k:]
        val = np.maximum(np.take_along_axis(pre, idx, 1), 0)
        x_hat = np.einsum("tk,tkd->td", val, weights["W_dec"][idx]) + weights["b_dec"]
        err += float(((x - x_hat) ** 2).sum())
        fired[idx[val > 0]] = True
    total = float(((acts - acts.mean(0)) ** 2).sum())
    return err / total, 1.0 - fired.mean()


def train(cfg: TrainConfig, source: ActivationSource, *, show_progress: bool = True,
          echo: Callable[[str], None] = print) -> TrainResult:
    """Capture, train, evaluate on held-out tokens, and save in SAELens format. Seeded end to end."""
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from sae.formats.saelens import write_saelens

    started = time.perf_counter()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), disable=not show_progress) as bar:
        cap = bar.add_task(f"capture {source.model_name} activations", total=cfg.max_tokens, info="")
        corpus = source.capture(cfg.layer, cfg.max_tokens, cfg.seq_len, lambda n: bar.advance(cap, n))
        bar.update(cap, completed=cfg.max_tokens)
        order = np.random.default_rng(cfg.seed).permutation(corpus.acts.shape[0])
        n_eval = max(1, int(len(order) * cfg.eval_fraction))
        eval_acts, train_acts = corpus.acts[order[:n_eval]], corpus.acts[order[n_eval:]]
        task = bar.add_task("train TopK SAE", total=cfg.steps, info="")

        def report(step: int, loss: float) -> None:
            bar.update(task, completed=step + 1, info=f"loss {loss:.4f}")

        weights = train_topk_sae(train_acts, cfg, report)
    fvu, _ = evaluate(eval_acts, weights, cfg.k)
    _, dead = evaluate(corpus.acts, weights, cfg.k)
    write_saelens(cfg.folder, weights, {
        "architecture": "topk", "k": cfg.k, "activation_convention": source.convention,
        "metadata": {"model_name": source.model_name, "hook_name": source.hook_name(cfg.layer),
                     "dataset_path": source.dataset, "context_size": cfg.seq_len,
                     "training_tokens": int(train_acts.shape[0]), "seed": cfg.seed},
    })
    seconds = time.perf_counter() - started
    echo(f"trained {cfg.folder}: d_in={corpus.acts.shape[1]} d_sae={cfg.d_sae} k={cfg.k} on {train_acts.shape[0]} "
         f"tokens in {seconds:.1f}s; held-out FVU {fvu:.4f} (variance explained {1 - fvu:.1%}); "
         f"dead features {dead:.1%}")
    return TrainResult(folder=cfg.folder, fvu=fvu, dead_fraction=dead, tokens=int(train_acts.shape[0]),
                       seconds=seconds)
