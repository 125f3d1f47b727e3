"""Capture configuration: one frozen dataclass, environment read once by `from_env()`.

Why a frozen value: the hook runs on the model server's hot path, so everything it needs is decided up front and
never re-read (no env lookups, no validation) per token.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

COMPRESS_OPTIONS = ("json", "f16-zstd", "f16-lz4")
SUMMARY_OPTIONS = ("dense", "topk")


@dataclass(frozen=True)
class CaptureConfig:
    """What to capture and how to ship it.

    `summary` defaults to "dense" (the full residual vector per token) because the explainer's SAE decode computes
    `relu((x - b_dec) @ W_enc + b_enc)` on the whole vector; "topk" keeps the `topk` largest-magnitude entries
    (indices + signed values) and is meant for cheap all-layer capture where an approximate `x` is acceptable.
    `compress` picks the shard codec: "json" (readable, large) or float16 values + int32 indices framed with zstd or lz4.
    `layers=None` captures every layer handed to the pipeline; otherwise others are ignored cheaply.
    """

    model_name: str
    model_hash: str
    topk: int = 256
    window_size: int = 16
    compress: str = "json"
    namespace: str = "activations"
    layers: tuple[int, ...] | None = None
    summary: str = "dense"
    hook_point: str = "resid_post"
    convention: str = "hf_raw"
    ttl_s: int = 3600
    queue_max: int = 1024
    batch_max: int = 64
    flush_timeout_s: float = 5.0
    redis_url: str = "redis://127.0.0.1:6379/0"

    def __post_init__(self) -> None:
        if self.compress not in COMPRESS_OPTIONS:
            raise ValueError(f"compress must be one of {COMPRESS_OPTIONS}, got {self.compress!r}")
        if self.summary not in SUMMARY_OPTIONS:
            raise ValueError(f"summary must be one of {SUMMARY_OPTIONS}, got {self.summary!r}")
        if self.topk < 1 or self.window_size < 1 or self.queue_max < 1 or self.batch_max < 1 or self.ttl_s < 1:
            raise ValueError("topk, window_size, queue_max, batch_max and ttl_s must be >= 1")
        if ":" in self.namespace or not self.namespace:
            raise ValueError("namespace must be non-empty and must not contain ':' (it prefixes shard keys)")
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(sorted({int(layer) for layer in self.layers})))

    @classmethod
    def from_env(cls, *, model_name: str, model_hash: str, layers: Sequence[int] | None = None, **overrides: Any
                 ) -> "CaptureConfig":
        """Build from `CAPTURE_*` variables; keyword overrides win.

        CAPTURE_TTL_S, CAPTURE_REDIS_URL, CAPTURE_COMPRESS, CAPTURE_SUMMARY, CAPTURE_TOPK, CAPTURE_WINDOW_SIZE,
        CAPTURE_NAMESPACE, CAPTURE_QUEUE_MAX, CAPTURE_FLUSH_TIMEOUT_S.
        """
        env = os.environ
        values: dict[str, Any] = {
            "ttl_s": int(env.get("CAPTURE_TTL_S", cls.ttl_s)),
            "redis_url": env.get("CAPTURE_REDIS_URL", cls.redis_url),
            "compress": env.get("CAPTURE_COMPRESS", cls.compress),
            "summary": env.get("CAPTURE_SUMMARY", cls.summary),
            "topk": int(env.get("CAPTURE_TOPK", cls.topk)),
            "window_size": int(env.get("CAPTURE_WINDOW_SIZE", cls.window_size)),
            "namespace": env.get("CAPTURE_NAMESPACE", cls.namespace),
            "queue_max": int(env.get("CAPTURE_QUEUE_MAX", cls.queue_max)),
            "flush_timeout_s": float(env.get("CAPTURE_FLUSH_TIMEOUT_S", cls.flush_timeout_s)),
        }
        values.update(overrides)
        return cls(model_name=model_name, model_hash=model_hash,
                   layers=tuple(layers) if layers is not None else None, **values)
