"""`SAEDictionary`: one layer's dictionary, whatever its on-disk format, with the source library's encode and the
fast tiled top-k.

Tensors stay memory-mapped (see `sae.tensorfile`); the padded GEMM operand of the fast path is built on first use and
kept, because it is the one thing every decode of this layer reads in full.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from sae.architectures import get_architecture
from sae.architectures.base import Scoring
from sae.errors import DictionaryError
from sae.formats import read_spec
from sae.normalization import normalize
from sae.spec import DictionarySpec
from sae.topk import CPUTopK

DEFAULT_TILE_ROWS = 256


class SAEDictionary:
    """A validated dictionary for one captured layer.

    Attributes: `d_in`, `d_sae`, `format` (saelens|sparsify|gemmascope), `architecture` (standard|topk|jumprelu|
    gated), `folder`, `hook_name`, `activation_convention` (hf_raw|transformer_lens|unknown), `W_dec [d_sae, d_in]`,
    `b_dec [d_in]` (float32, after any folding the format requires).
    """

    def __init__(self, spec: DictionarySpec) -> None:
        self.spec = spec
        self._arch = get_architecture(spec.architecture, format=spec.format, file=spec.folder)
        self._fast: CPUTopK | None = None
        self._lock = threading.Lock()

    format = property(lambda self: self.spec.format)
    architecture = property(lambda self: self._arch.NAME)
    folder = property(lambda self: self.spec.folder)
    d_in = property(lambda self: self.spec.d_in)
    d_sae = property(lambda self: self.spec.d_sae)
    hook_name = property(lambda self: self.spec.hook_name)
    activation_convention = property(lambda self: self.spec.activation_convention)
    k = property(lambda self: self.spec.k)

    @property
    def W_dec(self) -> np.ndarray:
        return self.spec.tensors["W_dec"]

    @property
    def b_dec(self) -> np.ndarray:
        return self.spec.tensors["b_dec"]

    @property
    def W_enc(self) -> np.ndarray:
        return self.spec.tensors["W_enc"]

    def __repr__(self) -> str:
        return (f"SAEDictionary(format={self.format!r}, architecture={self.architecture!r}, d_in={self.d_in}, "
                f"d_sae={self.d_sae}, folder='{self.folder}')")

    def check_shape(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """The [T, d_in] shape of activations of `shape` ([T, d_in] or [d_in]); DictionaryError when the width does
        not fit. Separate from the values check so a device path can check the values where they are."""
        if len(shape) == 1:
            shape = (1, *shape)
        if len(shape) != 2 or shape[1] != self.d_in:
            raise DictionaryError(
                f"activations have shape {list(shape)} but the dictionary expects d_in={self.d_in} "
                f"(wrong layer, model or dictionary?)", format=self.format, file=self.spec.weights_file)
        return int(shape[0]), int(shape[1])

    def check_input(self, acts: np.ndarray) -> np.ndarray:
        """acts: [T, d_in] (or [d_in]) -> float32 [T, d_in]; DictionaryError when the width or values do not fit."""
        x = np.asarray(acts)
        x = np.ascontiguousarray(x.reshape(self.check_shape(x.shape)), dtype=np.float32)
        if not np.isfinite(x).all():
            raise DictionaryError("activations contain NaN or Inf", format=self.format, file=self.spec.weights_file)
        return x

    def sae_in(self, acts: np.ndarray) -> np.ndarray:
        """What the encoder sees: normalised activations minus b_dec when the format applies it.

        Subtracting b_dec centres the input on the dictionary's own origin (the decoder adds it back), which is how
        the dictionary was trained; Gemma Scope and transcoders skip it because their decoder bias lives elsewhere.
        """
        x = normalize(self.check_input(acts), self.spec.normalize_activations)
        return x - self.b_dec if self.spec.apply_b_dec_to_input else x

    def encode(self, acts: np.ndarray) -> np.ndarray:
        """acts: [T, d_in] -> dense feature activations [T, d_sae] (the source library's encode; small inputs)."""
        return np.asarray(self._arch.encode(self.sae_in(acts), self.spec), dtype=np.float32)

    def scoring(self) -> Scoring:
        """The architecture's affine map + elementwise step (see `sae.architectures.base`), for a backend that builds
        its own operands (the torch path) without the CPU path's padded copy of W."""
        return self._arch.scoring(self.spec)

    def fast_path(self) -> CPUTopK:
        with self._lock:
            if self._fast is None:
                self._fast = CPUTopK(self.scoring(), self.d_in, self.d_sae)
            return self._fast

    def topk(self, acts: np.ndarray, k: int, *, tile_rows: int = DEFAULT_TILE_ROWS) -> tuple[np.ndarray, np.ndarray]:
        """acts: [T, d_in] -> (indices int64 [T, k], values float32 [T, k]), rows sorted by value descending.

        Same features and values as `encode` followed by a top-k (ties aside); entries beyond the active features have
        value 0.0. Scored `tile_rows` tokens at a time so memory stays bounded.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        return self.fast_path().topk(self.sae_in(acts), int(k), int(tile_rows))


def load_dictionary(folder: str | Path) -> SAEDictionary:
    """Load the dictionary in one layer folder (`DICT_ROOT/DICT_NAME/layer_<L>/`), detecting its format.

    Raises DictionaryError (naming format, file and tensor) for anything that makes the folder unusable.
    """
    return SAEDictionary(read_spec(Path(folder)))
