"""Capture hooks for model servers: per-token residual-stream summaries → Redis shards → an `activations` envelope.

Importable without Django, numpy or torch (each is imported where it is needed). Public API:
`CaptureConfig`, `CapturePipeline`, `register_layer_hook`, `InMemoryStore`, `RedisStore`, `attach`, `detach`,
`find_layers`, `model_hash`, `read_shards`, `ShardsMissing`, `decode_shard`, `encode_shard`, `Shard`, `shard_key`.
"""
from .codec import Shard, decode_shard, encode_shard
from .config import COMPRESS_OPTIONS, SUMMARY_OPTIONS, CaptureConfig
from .pipeline import CapturePipeline, register_layer_hook, shard_key
from .reader import ShardsMissing, read_shards
from .stores import InMemoryStore, RedisStore
from .torch_hooks import CaptureHandle, attach, detach, find_layers, model_hash

__all__ = [
    "COMPRESS_OPTIONS",
    "CaptureHandle",
    "SUMMARY_OPTIONS",
    "CaptureConfig",
    "CapturePipeline",
    "InMemoryStore",
    "RedisStore",
    "Shard",
    "ShardsMissing",
    "attach",
    "decode_shard",
    "detach",
    "encode_shard",
    "find_layers",
    "model_hash",
    "read_shards",
    "register_layer_hook",
    "shard_key",
]
