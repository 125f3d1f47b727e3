"""Dictionaries the end-to-end tests plant in the worker's `sample` set, one layer folder per layer a test owns.

The package-scoped worker keeps the dictionaries it has loaded, so a layer belongs to one test: `owned_layers` fails
the test when another one left that layer's folder behind, and removes the folders afterwards.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from sae.config import dictionary_layer_folder
from sae.testing import write_saelens_dictionary


@contextmanager
def owned_layers(e2e_dirs: dict[str, Path], layers: Sequence[int]) -> Iterator[list[Path]]:
    folders = [dictionary_layer_folder(e2e_dirs["dict_root"], "sample", layer) for layer in layers]
    for layer, folder in zip(layers, folders):
        if folder.exists():
            pytest.fail(f"{folder} exists: another test uses layer {layer}; give this test layers of its own")
    try:
        yield folders
    finally:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


def write_sample_layer(folder: Path, dictionary, layer: int) -> None:
    """The demo's sample dictionary (`samples.make_dictionary()`), with its labels, as layer `layer`'s."""
    write_saelens_dictionary(folder, dictionary.W_enc, dictionary.b_enc, dictionary.W_dec, dictionary.b_dec,
                             cfg_overrides={"hook_name": f"blocks.{layer}.hook_resid_post",
                                            "activation_convention": "hf_raw"})
    (folder / "labels.json").write_text(json.dumps({str(k): v for k, v in dictionary.labels.items()}))


def write_random_tied(folder: Path, width: int, seed: int) -> None:
    """A random tied ReLU dictionary of 2 × `width` features (b_enc = 0, so a real model's residuals switch features
    on): what the plumbing of a real model's trace needs when no dictionary was trained for that layer."""
    w_dec = np.random.default_rng(seed).standard_normal((2 * width, width)).astype(np.float32)
    w_dec /= np.linalg.norm(w_dec, axis=1, keepdims=True)
    write_saelens_dictionary(folder, w_dec.T.copy(), np.zeros(2 * width, np.float32), w_dec,
                             np.zeros(width, np.float32), cfg_overrides={"activation_convention": "hf_raw"})
