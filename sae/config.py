"""Settings of the SAE library, read from the environment once.

`SAEConfig.from_env()` is the only place that looks at `os.environ`; everything else receives a config object, so
tests and the backpressure controller can build or replace one without touching the process environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEVICES = ("auto", "cpu", "cuda")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def dictionary_layer_folder(dict_root: Path | str, name: str, layer: int) -> Path:
    """`<dict_root>/<name>/layer_<layer>`: where one layer's dictionary lives.

    The one statement of the layout, shared by the service that reads dictionaries and by the training, labelling
    and sample commands that write them, so writers and reader cannot drift apart.
    """
    return Path(dict_root) / name / f"layer_{int(layer)}"


def dictionary_layers(dict_root: Path | str, name: str) -> list[int]:
    """The layers that have a folder in the dictionary set `<dict_root>/<name>`, ascending (none if it is missing)."""
    folder = Path(dict_root) / name
    if not folder.is_dir():
        return []
    suffixes = (p.name.removeprefix("layer_") for p in folder.glob("layer_*") if p.is_dir())
    return sorted(int(s) for s in suffixes if s.isdigit())


@dataclass(frozen=True)
class SAEConfig:
    """Where dictionaries live and how decoding is batched.

    dict_root / dict_name / layer_<L>/ is one dictionary folder. `topk` is the default number of features kept per
    token; `tile_rows` bounds how many token rows are scored at once on the CPU (memory stays O(tile_rows * d_sae)).
    `batch_size` is the most requests merged into one micro-batch and `max_wait_ms` how long the first request of a
    batch waits for company. `cache_layers` is the size of the LRU of loaded layers. `enable_service=False` makes the
    service decode inline in the caller's thread.
    """

    dict_root: Path = field(default_factory=lambda: Path("var/dicts"))
    dict_name: str = "sample"
    topk: int = 64
    tile_rows: int = 256
    device: str = "auto"
    batch_size: int = 8
    max_wait_ms: float = 2.0
    cache_layers: int = 4
    enable_service: bool = True

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"SAE_DEVICE must be one of {DEVICES}, got {self.device!r}")
        for name in ("topk", "tile_rows", "batch_size", "cache_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        object.__setattr__(self, "dict_root", Path(self.dict_root))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **given: Any) -> SAEConfig:
        """Read the settings from `env` (os.environ by default); fields in `given` are taken as they are, not read.

        An application that already read `DICT_ROOT`/`DICT_NAME` once (Django's settings) passes them here, so the
        variables are read in one place.
        """
        env = os.environ if env is None else env
        read = {
            "dict_root": lambda: Path(env.get("DICT_ROOT") or "var/dicts"),
            "dict_name": lambda: env.get("DICT_NAME") or "sample",
            "topk": lambda: _int(env, "SAE_TOPK", 64),
            "tile_rows": lambda: _int(env, "SAE_TILE_ROWS", 256),
            "device": lambda: (env.get("SAE_DEVICE") or "auto").strip().lower(),
            "batch_size": lambda: _int(env, "SAE_BATCH_SIZE", 8),
            "max_wait_ms": lambda: _float(env, "SAE_MAX_WAIT_MS", 2.0),
            "cache_layers": lambda: _int(env, "SAE_CACHE_LAYERS", 4),
            "enable_service": lambda: env.get("ENABLE_SAE_SERVICE", "1").strip().lower() not in ("0", "false", "no",
                                                                                                  "off"),
        }
        return cls(**{name: given[name] if name in given else value() for name, value in read.items()})

    def layer_folder(self, layer: int) -> Path:
        """The folder holding the dictionary of one captured layer."""
        return dictionary_layer_folder(self.dict_root, self.dict_name, layer)
