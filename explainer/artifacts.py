"""Intermediate results passed between chain stages, keyed by trace.

Stages exchange trace ids over the broker, never arrays: each stage reads its inputs here and writes its outputs
here, so any stage can be re-run after a crash. Two places can hold them (`ARTIFACT_BACKEND`): a folder
(`ARTIFACT_ROOT`) that every worker shares, or the object store (`STORAGES["artifacts"]`, S3), so that workers on
hosts with no shared disk (a `gpu` worker on a GPU box, `default` workers elsewhere) hand arrays to each other. Either
way a reader never sees a half-written artifact: files are written to a temporary name and renamed, and an S3 PUT
is atomic.
"""
from __future__ import annotations

import json
import os
import shutil
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
from django.conf import settings
from safetensors.numpy import load, save

from . import object_keys
from .object_store import ObjectMissing, object_get, object_put, objects_delete_under, storage


class ArtifactMissing(FileNotFoundError):
    """A stage ran before the stage that produces its input (or the input was cleaned up)."""


class ArtifactStore(ABC):
    """Arrays (safetensors) and JSON values of a trace, by name; subclasses say where the bytes go."""

    @abstractmethod
    def _put(self, trace_pk: int, filename: str, data: bytes) -> None:
        """Store `data` atomically: a reader sees the old bytes or the new, never part of them."""

    @abstractmethod
    def _get(self, trace_pk: int, filename: str) -> bytes:
        """The bytes, or `ArtifactMissing`."""

    @abstractmethod
    def delete(self, trace_pk: int) -> None:
        """Remove every artifact of the trace; nothing there is not an error."""

    def save_arrays(self, trace_pk: int, name: str, arrays: dict[str, np.ndarray]) -> None:
        self._put(trace_pk, f"{name}.safetensors", save({k: np.ascontiguousarray(v) for k, v in arrays.items()}))

    def load_arrays(self, trace_pk: int, name: str) -> dict[str, np.ndarray]:
        return load(self._get(trace_pk, f"{name}.safetensors"))

    def save_json(self, trace_pk: int, name: str, value) -> None:
        self._put(trace_pk, f"{name}.json", json.dumps(value, separators=(",", ":"), sort_keys=True).encode())

    def load_json(self, trace_pk: int, name: str):
        return json.loads(self._get(trace_pk, f"{name}.json"))

    @staticmethod
    def _missing(trace_pk: int, filename: str) -> ArtifactMissing:
        name = filename.rsplit(".", 1)[0]
        return ArtifactMissing(f"artifact '{name}' of trace {trace_pk} is missing")


class FolderArtifactStore(ArtifactStore):
    """`<root>/<trace pk>/<file>`: every worker must see the same folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _put(self, trace_pk: int, filename: str, data: bytes) -> None:
        path = self.root / str(trace_pk) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def _get(self, trace_pk: int, filename: str) -> bytes:
        try:
            return (self.root / str(trace_pk) / filename).read_bytes()
        except FileNotFoundError:
            raise self._missing(trace_pk, filename) from None

    def delete(self, trace_pk: int) -> None:
        shutil.rmtree(self.root / str(trace_pk), ignore_errors=True)


class ObjectArtifactStore(ArtifactStore):
    """`<S3_PREFIX>/_artifacts/<trace pk>/<file>` in the artifacts storage; an outage raises `StorageUnavailable`."""

    def __init__(self, prefix: str, alias: str = "artifacts") -> None:
        self.prefix = prefix
        self.alias = alias

    def _key(self, trace_pk: int, filename: str) -> str:
        return f"{object_keys.artifacts_prefix(self.prefix, trace_pk)}/{filename}"

    def _put(self, trace_pk: int, filename: str, data: bytes) -> None:
        object_put(storage(self.alias), self._key(trace_pk, filename), data)

    def _get(self, trace_pk: int, filename: str) -> bytes:
        try:
            return object_get(storage(self.alias), self._key(trace_pk, filename))
        except ObjectMissing:
            raise self._missing(trace_pk, filename) from None

    def delete(self, trace_pk: int) -> None:
        objects_delete_under(storage(self.alias), object_keys.artifacts_prefix(self.prefix, trace_pk))


def configured_artifact_store() -> ArtifactStore:
    """The store `ARTIFACT_BACKEND` names: `local` (the folder `ARTIFACT_ROOT`) or `s3`."""
    if settings.ARTIFACT_BACKEND == "s3":
        return ObjectArtifactStore(settings.S3_PREFIX)
    return FolderArtifactStore(settings.ARTIFACT_ROOT)
