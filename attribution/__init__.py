"""Attribution of a trace's outputs to its SAE features, grounded in the model's own computation, within a budget.

Pure numpy, no Django. `attribute` is the entry point; see `value` for what is attributed and `acdc`, `shapley`,
`saliency` for how.
"""
from .scheduler import attribute
from .config import AttributionConfig
from .degrade import apply_degradation
from .inputs import AttributionResult, LayerFeatures, Unembedding
from .unembedding import load_unembedding

__all__ = [
    "AttributionConfig", "AttributionResult", "LayerFeatures", "Unembedding", "apply_degradation", "attribute",
    "load_unembedding",
]
