"""Attribution of a trace's outputs to its SAE features, grounded in the model's own computation, within a budget.

Pure numpy, no Django. `attribute` is the entry point and returns a `hif.Graph`; see `value` for what is attributed
and `acdc`, `shapley`, `saliency` for how, `graph` for the output.
"""
from .scheduler import attribute
from .config import AttributionConfig
from .inputs import AttributionResult, LayerFeatures, Unembedding
from .unembedding import load_unembedding

__all__ = [
    "AttributionConfig", "AttributionResult", "LayerFeatures", "Unembedding", "attribute",
    "load_unembedding",
]
