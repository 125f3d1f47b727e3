"""Which methods exist, which granularities each serves, and how each splits a trace into budgeted work units.

A unit covers some windows of one layer and offers `start(deadline) -> bool` (prepare and reach a first estimate),
`step(deadline)` (one bounded piece of extra sampling), `done`, `step_cost` (seconds of its last step) and
`estimates()`. Each unit draws from its own generator seeded by (seed, method, layer, unit), so its result does not
depend on how the scheduler interleaves units.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .acdc import AcdcWindow
from .config import AttributionConfig
from .inputs import LayerFeatures
from .shapley import ShapleyBlock, block_size
from .value import ValueFunction

UnitBuilder = Callable[[Sequence[LayerFeatures], Sequence[tuple[int, int]], ValueFunction, AttributionConfig], list]

METHOD_CODES = {"saliency": 0, "acdc": 1, "shapley": 2}


def _rng(config: AttributionConfig, method: str, layer: int, unit: int) -> np.random.Generator:
    return np.random.default_rng([config.random_seed, METHOD_CODES[method], abs(layer), unit])


def acdc_units(layers: Sequence[LayerFeatures], windows: Sequence[tuple[int, int]], vf: ValueFunction,
               config: AttributionConfig) -> list[AcdcWindow]:
    """One unit per (window, layer), ordered window-major so a budget cut leaves whole late windows to saliency."""
    return [AcdcWindow(lf, j, span, vf, max_samples=config.max_samples, delta=config.early_stop_delta,
                       rng=_rng(config, "acdc", lf.layer, j))
            for j, span in enumerate(windows) for lf in layers]


def shapley_units(layers: Sequence[LayerFeatures], windows: Sequence[tuple[int, int]], vf: ValueFunction,
                  config: AttributionConfig) -> list[ShapleyBlock]:
    """One unit per block of token positions per layer (token windows are single positions)."""
    units = []
    positions = np.asarray([s for s, _ in windows], dtype=np.int64)
    for lf in layers:
        size = block_size(lf.indices.shape[1])
        for unit, lo in enumerate(range(0, len(positions), size)):
            units.append(ShapleyBlock(lf, positions[lo:lo + size], vf, max_samples=config.max_samples,
                                      delta=config.early_stop_delta, rng=_rng(config, "shapley", lf.layer, unit)))
    return units


METHODS: dict[str, tuple[frozenset[str], UnitBuilder]] = {
    "acdc": (frozenset({"sentence", "token"}), acdc_units),
    "shapley": (frozenset({"token"}), shapley_units),
}


def unit_builder(method: str, granularity: str) -> UnitBuilder:
    granularities, builder = METHODS[method]
    if granularity not in granularities:
        raise ValueError(f"method {method!r} does not attribute at {granularity!r} granularity")
    return builder
