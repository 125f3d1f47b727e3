"""Cheaper configurations for the pipeline's backpressure ladder."""
from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace

from .config import AttributionConfig

log = logging.getLogger(__name__)

MIN_SAMPLES = 8
RELAXED_DELTA_FACTOR = 4.0


def apply_degradation(config: AttributionConfig, actions: Iterable[str]) -> AttributionConfig:
    """Apply backpressure actions in order; each one only ever makes attribution cheaper.

    `halve_samples` halves the sample cap (never below a few samples, so estimates keep a standard error),
    `relax_early_stop` lets sampling stop at a coarser standard-error ratio, `force_saliency` skips sampling
    altogether. Actions meant for other stages (the ladder is shared) are ignored.
    """
    for action in actions:
        if action == "halve_samples":
            config = replace(config, max_samples=max(MIN_SAMPLES, config.max_samples // 2))
        elif action == "relax_early_stop":
            delta = config.early_stop_delta * RELAXED_DELTA_FACTOR if config.early_stop_delta > 0 else 0.05
            config = replace(config, early_stop_delta=delta)
        elif action == "force_saliency":
            config = replace(config, method_sentence="saliency", method_token="saliency")
        else:
            log.debug("attribution ignores degradation action %r", action)
    return config
