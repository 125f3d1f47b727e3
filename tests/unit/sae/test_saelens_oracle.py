"""Against SAELens's own `encode` on the same files.

sae-lens pins its own stack, so this runs in a venv of its own: `bash scripts/saelens_oracle.sh` (which
`scripts/test.sh` runs after the suite, and which fails if anything here skips). In the project's venv it skips.
"""

from __future__ import annotations

import numpy as np
import pytest

sae_lens = pytest.importorskip("sae_lens", reason="sae-lens is not installed here: bash scripts/saelens_oracle.sh")
torch = pytest.importorskip("torch")

from sae import load_dictionary  # noqa: E402
from sae.testing import random_weights, write_saelens_dictionary  # noqa: E402
from tests.unit.sae.helpers import assert_same_topk  # noqa: E402

rng = np.random.default_rng(9)
D_IN, D_SAE = 32, 384
CASES = {
    "standard": ({}, {}),
    "standard_no_b_dec": ({"apply_b_dec_to_input": False}, {}),
    "layer_norm": ({"normalize_activations": "layer_norm"}, {}),
    "expected_average_only_in": ({"normalize_activations": "expected_average_only_in"}, {}),
    "topk": ({"architecture": "topk", "k": 10}, {}),
    "topk_rescaled": ({"architecture": "topk", "k": 10, "rescale_acts_by_decoder_norm": True}, {}),
    "jumprelu": ({"architecture": "jumprelu"}, {"threshold": np.abs(rng.normal(0.3, 0.2, D_SAE))}),
    "gated": ({"architecture": "gated"}, {"b_gate": rng.normal(0, 0.3, D_SAE), "r_mag": rng.normal(0, 0.3, D_SAE),
                                          "b_mag": rng.normal(0, 0.3, D_SAE)}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_as_saelens_encode(tmp_path, case):
    cfg, extra = CASES[case]
    w = random_weights(D_IN, D_SAE, seed=1)
    w["W_dec"] *= rng.uniform(0.5, 2.0, (D_SAE, 1)).astype(np.float32)
    write_saelens_dictionary(tmp_path, w["W_enc"], None if case == "gated" else w["b_enc"], w["W_dec"], w["b_dec"],
                             cfg, extra_tensors=extra)
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path), device="cpu")
    x = (rng.standard_normal((50, D_IN)) * 2 + 0.5).astype(np.float32)
    with torch.no_grad():
        expected = theirs.encode(torch.from_numpy(x)).numpy()
    ours = load_dictionary(tmp_path)
    np.testing.assert_allclose(ours.encode(x), expected, atol=2e-5, rtol=1e-5)
    for k in (5, 40):
        idx, val = ours.topk(x, k)
        assert_same_topk(idx, val, expected.astype(np.float64), k)
