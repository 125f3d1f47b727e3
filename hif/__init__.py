"""Pure-Python + numpy HIF library: prune and group attribution hypergraphs, build, validate and export them.

No Django imports: the Celery pipeline, the API and command-line tools all call these functions directly. A graph
is a `Graph` (numpy columns, what attribution returns) or, in the seed system's form, lists of node and incidence
dicts; `hif.ids` is the one place ids are minted and parsed.
"""

from . import ids
from .build import build_hif
from .canonical import dumps_canonical
from .concepts import concepts_document, with_concept_nodes
from .config import HypergraphConfig
from .graph import Graph
from .neuronpedia import to_neuronpedia_graph
from .prune import prune_and_group
from .standard import from_hif_standard, to_hif_standard
from .validate import validate_hif

__all__ = [
    "Graph",
    "HypergraphConfig",
    "build_hif",
    "concepts_document",
    "dumps_canonical",
    "from_hif_standard",
    "ids",
    "prune_and_group",
    "to_hif_standard",
    "to_neuronpedia_graph",
    "validate_hif",
    "with_concept_nodes",
]
