"""Attribution of a trace's outputs to its SAE features, grounded in the model's own computation, within a budget.

Pure numpy, no Django. `attribute` is the entry point and returns a `hif.Graph`; see `value` for what is attributed
and `acdc`, `shapley`, `saliency` for how, `graph` for the output. With the model itself at hand,
`attribute_through_model` values features through every later layer (`shadow`) and `verify` checks the strongest
incidences by ablation. `extract_concepts` finds the named things of a prompt (spaCy and fallbacks).
"""
from .scheduler import attribute, window_spans
from .concepts import Concept, extract_concepts
from .config import AttributionConfig, ConceptConfig, VerifyConfig
from .endpoint import EndpointModel
from .inputs import AttributionResult, LayerFeatures, Unembedding
from .shadow import ModelInputs, ShadowModel, TorchShadow, attribute_through_model, load_shadow
from .shadow import mismatch as shadow_mismatch
from .unembedding import load_unembedding
from .verify import Verification, verify

__all__ = [
    "AttributionConfig", "AttributionResult", "Concept", "ConceptConfig", "EndpointModel", "LayerFeatures", "ModelInputs", "ShadowModel", "TorchShadow",
    "Unembedding", "Verification", "VerifyConfig", "attribute", "attribute_through_model", "extract_concepts", "load_shadow",
    "load_unembedding", "shadow_mismatch", "verify", "window_spans",
]
