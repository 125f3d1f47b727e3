import pytest

from hif import HypergraphConfig, build_hif

from .graphs import META, feat, inc, tok_in, tok_out


@pytest.fixture
def small_doc() -> dict:
    """A built v1 document with a supernode, a 3-node hyperedge, attributes and provenance."""
    nodes = [
        feat("feat_3_1", "Biology: cells", act=1.5),
        feat("feat_3_2", "Biology: DNA", act=0.5),
        feat("feat_4_3", "Biology: RNA", layer=4),
        feat("feat_5_9", "feature 9", layer=5, act=0.2),
        feat("feat_2_7", "feature 7", layer=2),
        tok_in(0, "The"),
        tok_in(1, " cat"),
        tok_out(0, " sat"),
        tok_out(1, " down"),
    ]
    incs = [
        inc("att_1", ["feat_3_1", "token_out_0"], 0.8, window="tok-0"),
        inc("att_2", ["feat_3_2", "token_out_1"], 0.3, window="tok-1"),
        inc("att_3", ["feat_4_3", "token_in_1", "token_out_1"], 0.6, window="tok-1", attributes={"samples": 8}),
        inc("att_4", ["feat_5_9", "token_out_0"], 0.4, window="tok-0"),
        inc("att_5", ["feat_2_7", "token_in_0"], 0.2, window="tok-0"),
        inc("att_6", ["feat_2_7", "feat_5_9"], 0.1, window="tok-0"),
    ]
    incs[3]["metadata"]["provenance"] = {"capture_layers": [3, 4, 5], "sae_version": "v1", "model_hash": ""}
    return build_hif(nodes, incs, dict(META), HypergraphConfig())
