"""Graph download formats: the stored HIF v1 document, or a conversion done on read by the `hif` library."""
from __future__ import annotations

import hif

from .models import Trace
from .trace_data import completion_of

EXPORT_FORMATS = frozenset({"hif-1", "hif-standard", "neuronpedia"})
# What a graph shows: the SAE features (in any export format), or the prompt's concepts (`hif.concepts_document`).
GRAPH_VIEWS = frozenset({"features", "concepts"})


def export_graph(*, trace: Trace, document: dict, fmt: str) -> dict:
    if fmt == "hif-standard":
        return hif.with_concept_nodes(hif.to_hif_standard(document), trace.concepts)
    if fmt == "neuronpedia":
        completion = completion_of(trace)
        return hif.to_neuronpedia_graph(
            document, slug=trace.trace_id, prompt=completion.prompt, prompt_tokens=completion.prompt_tokens
        )
    return document
