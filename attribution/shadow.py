"""Attribution through the rest of the model: a feature's effect on the emitted token's logit via every later layer.

The logit and cosine values (`value`) read the residual at the feature's layer straight through the final norm and
unembedding, which skips every block after that layer. With the model itself at hand (the "shadow" copy of the model
that produced the trace, `SHADOW_MODEL`), the effect is valued as circuit-tracer does: the residual x_L at layer L is
written as reconstruction + frozen SAE error, so the full feature set reproduces the model exactly, and a feature's
effect on a window's target is its first-order contribution through all downstream layers,

    effect(f, w) = Σ_{p ∈ w} a_f(p) · W_dec[f] · ∂target_w / ∂x_L[p]

where target_w is the mean over the window's positions q of the logit of the token emitted after q (gradient ×
activation; the error term, being frozen, has no effect of its own). One backward pass per window yields the
gradient for every feature of every layer at once; windows are batched as copies of the sequence.

The model is reached through `ShadowModel`, a two-method protocol (gradients, and target logits under edits), so
tests plant any module; `TorchShadow` implements it for a causal LM whose blocks write the residual stream.
torch and transformers are imported inside the functions that need them: this module imports without them.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

import hif

from .budget import Deadline
from .config import AttributionConfig
from .graph import build_graph
from .inputs import AttributionResult, Estimates, LayerFeatures, check_layers
from .saliency import saliency_estimates
from .scheduler import window_spans
from .threads import single_threaded_blas

METHOD = "gradient"  # incidences valued through the model record this method and the value "model"
VALUE = "model"
WINDOWS_PER_BATCH = 16  # sequence copies per backward pass: bounds memory at 16 × T × d per layer


class ShadowModel(Protocol):
    """The model a trace came from, as attribution and verification use it.

    `input_ids [T]` are the tokens fed at positions 0..T-1 and `targets [T]` the token emitted after each position;
    `objectives [W, T]` weigh each position's target logit into one scalar per window. Layer L is the output of
    block L (the residual stream after it), the same state the capture hooks record.
    """

    name: str
    n_layers: int

    def gradients(self, input_ids: np.ndarray, targets: np.ndarray, objectives: np.ndarray,
                  layers: Sequence[int]) -> dict[int, np.ndarray]:
        """∂(objectives[w] · target logits)/∂x_L for each window w: `{L: [W, T, d]}`."""

    def target_logits(self, input_ids: np.ndarray, targets: np.ndarray,
                      edits: Sequence[Mapping[int, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """Target logits and probabilities `[B, T]` with `edits[b][L] [T, d]` added to block L's output."""

    def residuals(self, input_ids: np.ndarray, layers: Sequence[int]) -> dict[int, np.ndarray]:
        """The residual stream after each of `layers`: `{L: [T, d]}`."""


class TorchShadow:
    """`ShadowModel` for a torch causal LM: `blocks` are the modules whose outputs are the residual stream, `lm` maps
    `input_ids [B, T]` to logits `[B, T, vocab]` (a transformers model or anything returning `.logits`).

    Each call hooks the shared blocks for its own pass, and a module's hooks fire for every thread's forward, so
    calls hold the instance's lock: a worker's threads take turns on the one loaded copy.
    """

    def __init__(self, lm: Any, blocks: Sequence[Any], *, name: str, device: str = "cpu") -> None:
        self.lm, self.blocks, self.name, self.device = lm, list(blocks), name, device
        self.n_layers = len(self.blocks)
        self.lock = threading.Lock()

    def gradients(self, input_ids: np.ndarray, targets: np.ndarray, objectives: np.ndarray,
                  layers: Sequence[int]) -> dict[int, np.ndarray]:
        import torch

        batch = len(objectives)
        zeros = {layer: None for layer in layers}

        def plant(layer: int):
            def hook(module, args, output):
                zeros[layer] = torch.zeros_like(_hidden(output), requires_grad=True)
                # d(out)/d(zeros) is the total derivative of the targets w.r.t. the residual after this block
                return _replaced(output, _hidden(output) + zeros[layer])
            return hook

        with self.lock, _hooked(self.blocks, layers, plant), torch.enable_grad():
            logits = self._logits(np.broadcast_to(input_ids, (batch, len(input_ids))))
            chosen = self._gather(logits, targets)
            weights = torch.as_tensor(np.asarray(objectives, dtype=np.float32), device=chosen.device)
            grads = torch.autograd.grad((chosen * weights).sum(), [zeros[layer] for layer in layers])
        return {layer: g.detach().float().cpu().numpy() for layer, g in zip(layers, grads)}

    def target_logits(self, input_ids: np.ndarray, targets: np.ndarray,
                      edits: Sequence[Mapping[int, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        import torch

        layers = sorted({layer for edit in edits for layer in edit})
        deltas = {}
        for layer in layers:
            stacked = np.zeros((len(edits), len(input_ids), self._width(layer, edits)), dtype=np.float32)
            for b, edit in enumerate(edits):
                if layer in edit:
                    stacked[b] = edit[layer]
            deltas[layer] = torch.as_tensor(stacked, device=self.device)

        def add(layer: int):
            def hook(module, args, output):
                return _replaced(output, _hidden(output) + deltas[layer].to(_hidden(output).dtype))
            return hook

        with self.lock, _hooked(self.blocks, layers, add), torch.no_grad():
            logits = self._logits(np.broadcast_to(input_ids, (len(edits), len(input_ids))))
            chosen = self._gather(logits, targets)
            probs = self._gather(torch.log_softmax(logits.float(), dim=-1), targets).exp()
        return chosen.float().cpu().numpy().astype(np.float64), probs.cpu().numpy().astype(np.float64)

    def next_token_probabilities(self, prompts: Sequence[np.ndarray], target: int) -> np.ndarray:
        """P(target | prompt) after each prompt (`interactions.TargetModel`); prompts of one length share a pass."""
        import torch

        out = np.empty(len(prompts), dtype=np.float64)
        by_length: dict[int, list[int]] = {}
        for i, prompt in enumerate(prompts):
            by_length.setdefault(len(prompt), []).append(i)
        with self.lock, torch.no_grad():
            for rows in by_length.values():
                last = self._logits(np.stack([prompts[i] for i in rows]))[:, -1].float()
                out[rows] = torch.softmax(last, dim=-1)[:, target].cpu().numpy()
        return out

    def residuals(self, input_ids: np.ndarray, layers: Sequence[int]) -> dict[int, np.ndarray]:
        import torch

        out: dict[int, np.ndarray] = {}

        def keep(layer: int):
            def hook(module, args, output):
                out[layer] = _hidden(output)[0].float().cpu().numpy()
            return hook

        with self.lock, _hooked(self.blocks, layers, keep), torch.no_grad():
            self._logits(np.asarray(input_ids)[None])
        return out

    def _logits(self, input_ids: np.ndarray) -> Any:
        import torch

        ids = torch.as_tensor(np.array(input_ids, dtype=np.int64), device=self.device)  # a copy: torch writes
        out = self.lm(ids)
        return out.logits if hasattr(out, "logits") else out

    def _gather(self, logits: Any, targets: np.ndarray) -> Any:
        """[B, T, vocab] → [B, T]: each position's target token."""
        import torch

        index = torch.as_tensor(np.asarray(targets, dtype=np.int64), device=logits.device)
        return logits.gather(-1, index.expand(logits.shape[0], -1)[..., None])[..., 0]

    @staticmethod
    def _width(layer: int, edits: Sequence[Mapping[int, np.ndarray]]) -> int:
        return next(edit[layer].shape[-1] for edit in edits if layer in edit)


@contextmanager
def _hooked(blocks: Sequence[Any], layers: Sequence[int], make_hook: Callable[[int], Any]) -> Iterator[None]:
    """Forward hooks `make_hook(L)` on the blocks of `layers` for the duration of the block."""
    handles = [blocks[layer].register_forward_hook(make_hook(layer)) for layer in layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _hidden(output: Any) -> Any:
    """The residual stream in a block's output (transformers blocks may return a tuple led by it)."""
    return output[0] if isinstance(output, tuple) else output


def _replaced(output: Any, hidden: Any) -> Any:
    """The block's output with its residual stream replaced by `hidden`."""
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


def load_shadow(path: str | Path, device: str | None = None) -> TorchShadow:
    """Load a transformers causal LM from a local folder (never the network) in eval mode, on CUDA when available.

    The blocks are found where the common architectures keep them (GPT-2 `transformer.h`, Llama/Mistral
    `model.layers`, GPT-NeoX `gpt_neox.layers`).
    """
    import torch
    from transformers import AutoModelForCausalLM

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    lm = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True).to(device).eval()
    for attr in ("transformer.h", "model.layers", "gpt_neox.layers"):
        owner: Any = lm
        for part in attr.split("."):
            owner = getattr(owner, part, None)
        if owner is not None:
            return TorchShadow(lm, owner, name=Path(path).name, device=device)
    raise ValueError(f"{path}: no transformer blocks found (looked for transformer.h, model.layers, gpt_neox.layers)")


@dataclass(frozen=True)
class ModelInputs:
    """What a shadow forward pass needs: `input_ids [T]` fed at each activation row's position, `targets [T]` the
    token emitted after it."""

    input_ids: np.ndarray
    targets: np.ndarray


def mismatch(shadow: ShadowModel, inputs: ModelInputs, layers: Sequence[LayerFeatures],
             tolerance: float = 0.05) -> str | None:
    """Why the shadow model is not the model a trace was captured from, or None when it is.

    Names, hashes and paths of a model differ between the server that ran it and the worker's copy, so the test is
    the computation itself: rerun on the trace's tokens, the shadow's residual at each captured layer must match the
    captured rows within `tolerance` (relative; float16 transport alone stays far below it).
    """
    for lf in layers:
        if not 0 <= lf.layer < shadow.n_layers:
            return f"layer {lf.layer} is not a layer of shadow model {shadow.name} ({shadow.n_layers} layers)"
    states = shadow.residuals(inputs.input_ids, [lf.layer for lf in layers])
    for lf in layers:
        own = states[lf.layer]
        if own.shape != lf.acts.shape:
            return (f"layer {lf.layer}: shadow model {shadow.name} gives residuals of shape {own.shape}, the trace "
                    f"{lf.acts.shape}")
        captured = np.asarray(lf.acts, dtype=np.float64)
        error = np.linalg.norm(own - captured) / max(np.linalg.norm(captured), 1e-12)
        if error > tolerance:
            return (f"layer {lf.layer}: shadow model {shadow.name} computes residuals {error:.0%} away from the "
                    f"captured ones (not the model that produced the trace)")
    return None


def window_objectives(windows: Sequence[tuple[int, int]], n_positions: int) -> np.ndarray:
    """[W, T]: each window's target is the mean of its positions' target logits."""
    out = np.zeros((len(windows), n_positions), dtype=np.float32)
    for j, (start, end) in enumerate(windows):
        out[j, start:end] = 1.0 / (end - start)
    return out


def model_estimates(layers: Sequence[LayerFeatures], shadow: ShadowModel, inputs: ModelInputs,
                    windows: Sequence[tuple[int, int]], deadline: Deadline) -> tuple[list[Estimates], np.ndarray]:
    """Gradient × activation estimates of every (window, layer, feature), and the windows left undone [n] int64.

    Windows go in batches of `WINDOWS_PER_BATCH`; a batch that the deadline would not allow (judged by the last one)
    is not started, and its windows are returned for the caller to value another way.
    """
    objectives = window_objectives(windows, len(inputs.input_ids))
    layer_ids = [lf.layer for lf in layers]
    parts: list[Estimates] = []
    cost = 0.0
    for lo in range(0, len(windows), WINDOWS_PER_BATCH):
        if not deadline.allows(cost):
            return parts, np.arange(lo, len(windows), dtype=np.int64)
        began = time.perf_counter()
        ids = np.arange(lo, min(lo + WINDOWS_PER_BATCH, len(windows)))
        grads = shadow.gradients(inputs.input_ids, inputs.targets, objectives[ids], layer_ids)
        parts += [_window_effects(lf, grads[lf.layer], ids, windows) for lf in layers]
        cost = time.perf_counter() - began
    return parts, np.zeros(0, dtype=np.int64)


def _window_effects(lf: LayerFeatures, grads: np.ndarray, window_ids: np.ndarray,
                    windows: Sequence[tuple[int, int]]) -> Estimates:
    """Σ over a window's positions of a_f · W_dec[f] · grad, summed per (window, feature), for one layer."""
    spans = np.asarray(windows, dtype=np.int64)[window_ids]
    lengths = spans[:, 1] - spans[:, 0]
    owner = np.repeat(np.arange(len(window_ids)), lengths)
    positions = np.concatenate([np.arange(s, e) for s, e in spans]) if len(spans) else np.zeros(0, np.int64)
    idx = np.asarray(lf.indices[positions], dtype=np.int64)
    val = np.asarray(lf.values[positions], dtype=np.float64)
    rows = np.asarray(lf.W_dec[idx.ravel()], dtype=np.float32).reshape(*idx.shape, -1)
    g = grads[owner, positions].astype(np.float32)  # [N, d]
    contribution = val * np.matmul(rows, g[..., None])[..., 0].astype(np.float64)  # [N, k]
    active = (val > 0) & np.any(rows != 0, axis=-1)
    win = np.broadcast_to(window_ids[owner][:, None], idx.shape)[active]
    feat = idx[active]
    span = int(feat.max()) + 1 if feat.size else 1
    keys, inverse = np.unique(win * span + feat, return_inverse=True)
    effect = np.bincount(inverse.ravel(), weights=contribution[active], minlength=len(keys))
    n = len(keys)
    return Estimates(method=METHOD, window=keys // span, layer=np.full(n, lf.layer, dtype=np.int64),
                     feature=keys % span, effect=effect, se=np.full(n, np.nan), samples=np.ones(n, dtype=np.int64),
                     converged=np.ones(n, dtype=bool))


def attribute_through_model(layers: Sequence[LayerFeatures], *, shadow: ShadowModel, inputs: ModelInputs,
                            granularity: str, windows: Sequence[tuple[int, int]], config: AttributionConfig,
                            graph_config: hif.HypergraphConfig | None = None,
                            labels: Mapping[int, Mapping[int, str]] | None = None,
                            tokens: Sequence[str] | None = None) -> AttributionResult:
    """`attribute`'s counterpart valued through the model (`value` "model", method "gradient").

    The granularity's budget bounds the backward passes; windows it leaves undone are attributed by saliency and
    marked so, as `attribute` does for its methods.
    """
    started = time.perf_counter()
    graph_config = graph_config or hif.HypergraphConfig()
    n_positions = check_layers(layers, inputs.targets, tokens)
    if len(inputs.input_ids) != n_positions:
        raise ValueError(f"input_ids has {len(inputs.input_ids)} entries for {n_positions} positions")
    spans = window_spans(granularity, windows, n_positions)
    budget = config.budget_ms(granularity)
    with single_threaded_blas():
        estimates, undone = model_estimates(layers, shadow, inputs, spans, Deadline(budget, start=started))
    estimates += [saliency_estimates(lf, spans, undone, fallback_from=METHOD) for lf in layers if len(undone)]
    graph = build_graph(
        estimates, layers=layers, windows=spans, granularity=granularity, value=VALUE,
        min_edge_weight=graph_config.min_edge_weight, per_token_cap=graph_config.per_token_incident_cap,
        labels=labels or {}, tokens=[f"token {p}" for p in range(n_positions)] if tokens is None else tokens)
    reason = (f"the {budget:.0f} ms budget ran out before {len(undone)} of {len(spans)} windows had their backward "
              f"pass; saliency stands in for them") if len(undone) else None
    elapsed = time.perf_counter() - started
    return AttributionResult(graph=graph, method=METHOD if len(undone) < len(spans) else "saliency", value=VALUE,
                             fell_back=bool(len(undone)), reason=reason, samples=1, elapsed_ms=elapsed * 1000.0)
