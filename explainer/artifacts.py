"""Intermediate results passed between chain stages, keyed by trace.

Stages exchange trace ids over the broker, never arrays: each stage reads its inputs here and writes its outputs
here, so any stage can be re-run after a crash. Files are written to a temporary name and renamed, so a reader
never sees a half-written artifact.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file


class ArtifactMissing(FileNotFoundError):
    """A stage ran before the stage that produces its input (or the input was cleaned up)."""


class ArtifactStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, trace_pk: int, name: str) -> Path:
        return self.root / str(trace_pk) / name

    def _write(self, path: Path, write) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        write(tmp)
        os.replace(tmp, path)

    def save_arrays(self, trace_pk: int, name: str, arrays: dict[str, np.ndarray]) -> None:
        contiguous = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        self._write(self._path(trace_pk, f"{name}.safetensors"), lambda p: save_file(contiguous, str(p)))

    def load_arrays(self, trace_pk: int, name: str) -> dict[str, np.ndarray]:
        path = self._path(trace_pk, f"{name}.safetensors")
        if not path.exists():
            raise ArtifactMissing(f"artifact '{name}' of trace {trace_pk} is missing")
        return load_file(str(path))

    def save_json(self, trace_pk: int, name: str, value) -> None:
        data = json.dumps(value, separators=(",", ":"), sort_keys=True)
        self._write(self._path(trace_pk, f"{name}.json"), lambda p: p.write_text(data))

    def load_json(self, trace_pk: int, name: str):
        path = self._path(trace_pk, f"{name}.json")
        if not path.exists():
            raise ArtifactMissing(f"artifact '{name}' of trace {trace_pk} is missing")
        return json.loads(path.read_text())

    def delete(self, trace_pk: int) -> None:
        shutil.rmtree(self.root / str(trace_pk), ignore_errors=True)
