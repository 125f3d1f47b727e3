"""On-disk dictionary formats, one module each, tried in a fixed order by the file that identifies them.

Each module exposes `NAME`, `detect(folder) -> bool` (cheap: a file name) and `read(folder) -> DictionarySpec`.
Adding a format is adding a module here and to `FORMATS`.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from sae.errors import DictionaryError
from sae.formats import gemmascope, saelens, sparsify
from sae.spec import DictionarySpec

FORMATS: tuple[ModuleType, ...] = (saelens, sparsify, gemmascope)


def detect_format(folder: Path) -> ModuleType:
    """The format module whose identifying file is in `folder`."""
    if not folder.is_dir():
        raise DictionaryError("folder is missing (is DICT_ROOT/DICT_NAME right, and was this layer trained?)",
                              file=folder)
    for module in FORMATS:
        if module.detect(folder):
            return module
    present = sorted(p.name for p in folder.iterdir())
    expected = "; ".join(f"{m.NAME}: {m.SIGNATURE}" for m in FORMATS)
    raise DictionaryError(f"no known dictionary format (expected {expected}); folder has {present}", file=folder)


def read_spec(folder: str | Path) -> DictionarySpec:
    folder = Path(folder)
    return detect_format(folder).read(folder)
