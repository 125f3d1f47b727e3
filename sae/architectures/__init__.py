"""Registry of SAE architectures, one module each (`encode` = the source library's formula, `scoring` = the same
computation as one GEMM plus an elementwise step for the fast top-k paths)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from sae.architectures import gated, jumprelu, standard, topk
from sae.errors import DictionaryError

ARCHITECTURES: dict[str, ModuleType] = {m.NAME: m for m in (standard, topk, jumprelu, gated)}
ALIASES = {"relu": "standard"}


def get_architecture(name: str, *, format: str | None = None, file: Path | None = None) -> ModuleType:
    module = ARCHITECTURES.get(ALIASES.get(name, name))
    if module is None:
        raise DictionaryError(f"architecture {name!r} is not supported (one of {sorted(ARCHITECTURES)})",
                              format=format, file=file)
    return module
