"""Lazy, memory-mapped access to the tensors of a dictionary file.

A dictionary can be hundreds of megabytes and a worker keeps several layers warm, so tensors are not read into RAM at
load time: float32 safetensors entries become read-only `np.memmap` views straight into the file (the OS page cache is
shared between worker processes), and only half-precision entries, which must be widened anyway, are copied. Shapes are
known from the file header alone, so a wrong shape is reported before any data is touched.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import numpy as np

from sae.errors import DictionaryError

_SAFETENSORS_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "F64": "<f8"}


def _widen(raw: np.ndarray, dtype: str) -> np.ndarray:
    """float32 view or copy of one stored tensor; bfloat16 is the upper half of a float32."""
    if dtype == "F32":
        return raw
    if dtype == "BF16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(np.float32)


class TensorFile:
    """Names, shapes and float32 arrays of the tensors in one file (safetensors or npz)."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.format = fmt
        self._shapes: dict[str, tuple[int, ...]] = {}

    @property
    def names(self) -> set[str]:
        return set(self._shapes)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._shapes[name]

    def array(self, name: str) -> np.ndarray:
        raise NotImplementedError

    def error(self, detail: str, tensor: str | None = None) -> DictionaryError:
        return DictionaryError(detail, format=self.format, file=self.path, tensor=tensor)


class SafetensorsFile(TensorFile):
    """Parses the safetensors header (8-byte length + JSON) and maps each float32 tensor without copying."""

    def __init__(self, path: Path, fmt: str) -> None:
        super().__init__(path, fmt)
        try:
            with path.open("rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                if n <= 0 or n > 100_000_000:
                    raise ValueError(f"implausible header length {n}")
                header = json.loads(fh.read(n))
        except (OSError, ValueError, struct.error) as exc:
            raise self.error(f"not a readable safetensors file ({exc})") from exc
        self._data_start = 8 + n
        self._entries: dict[str, tuple[str, tuple[int, int]]] = {}
        size = path.stat().st_size
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            dtype, shape, offsets = meta.get("dtype"), meta.get("shape"), meta.get("data_offsets")
            if dtype not in _SAFETENSORS_DTYPES:
                raise self.error(f"unsupported dtype {dtype}", tensor=name)
            begin, end = int(offsets[0]), int(offsets[1])
            expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(_SAFETENSORS_DTYPES[dtype]).itemsize
            if end - begin != expected or self._data_start + end > size:
                raise self.error("data range does not match its shape (truncated file?)", tensor=name)
            self._shapes[name] = tuple(int(s) for s in shape)
            self._entries[name] = (dtype, (begin, end))

    def array(self, name: str) -> np.ndarray:
        dtype, (begin, _) = self._entries[name]
        shape = self._shapes[name]
        if 0 in shape:
            return np.zeros(shape, np.float32)
        raw = np.memmap(self.path, dtype=_SAFETENSORS_DTYPES[dtype], mode="r", offset=self._data_start + begin,
                        shape=shape)
        return _widen(raw, dtype)


class NpzFile(TensorFile):
    """Reads shapes from each member's .npy header; arrays are loaded on demand (zip members cannot be mapped)."""

    def __init__(self, path: Path, fmt: str) -> None:
        super().__init__(path, fmt)
        try:
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if not info.filename.endswith(".npy"):
                        continue
                    with zf.open(info) as member:
                        version = np.lib.format.read_magic(member)
                        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                       else np.lib.format.read_array_header_2_0)
                        shape, _, dtype = read_header(member)
                    if dtype.kind != "f":
                        raise self.error(f"unsupported dtype {dtype}", tensor=info.filename[:-4])
                    self._shapes[info.filename[:-4]] = tuple(int(s) for s in shape)
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            if isinstance(exc, DictionaryError):
                raise
            raise self.error(f"not a readable npz file ({exc})") from exc

    def array(self, name: str) -> np.ndarray:
        with np.load(self.path) as npz:
            return np.ascontiguousarray(npz[name], dtype=np.float32)


def open_tensor_file(path: Path, fmt: str) -> TensorFile:
    if not path.is_file():
        raise DictionaryError("file is missing", format=fmt, file=path)
    if path.suffix == ".npz":
        return NpzFile(path, fmt)
    return SafetensorsFile(path, fmt)
