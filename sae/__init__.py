"""Sparse-autoencoder dictionaries and decoding (pure numpy; torch optional; no Django).

Public API used by the pipeline: `SAEConfig`, `DictionaryError`, `load_dictionary`, `SAEDictionary`, `load_labels`,
`SAEDecodeService`, `DecodeResult`, `check_convention`.
"""

from sae.config import SAEConfig
from sae.convention import check_convention
from sae.dictionary import SAEDictionary, load_dictionary
from sae.errors import DictionaryError
from sae.labels import load_labels, save_labels
from sae.service import DecodeResult, SAEDecodeService

__all__ = [
    "SAEConfig", "DictionaryError", "load_dictionary", "SAEDictionary", "load_labels", "save_labels",
    "SAEDecodeService", "DecodeResult", "check_convention",
]
