"""Pure-Python + numpy HIF library: prune and group attribution hypergraphs, build, validate and export them.

No Django imports: the Celery pipeline, the API and command-line tools all call these functions directly.
"""

from . import ids
from .build import build_hif
from .canonical import dumps_canonical
from .config import HypergraphConfig
from .neuronpedia import to_neuronpedia_graph
from .prune import prune_and_group
from .standard import from_hif_standard, to_hif_standard
from .validate import validate_hif

__all__ = [
    "HypergraphConfig",
    "build_hif",
    "dumps_canonical",
    "from_hif_standard",
    "ids",
    "prune_and_group",
    "to_hif_standard",
    "to_neuronpedia_graph",
    "validate_hif",
]
