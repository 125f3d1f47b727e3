"""Independent references for the SAE tests: full sorts in float64, no code shared with the library."""

from __future__ import annotations

import numpy as np


def reference_topk(dense: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of a dense activation matrix by full sort (the slow, obviously-correct way)."""
    order = np.argsort(-dense, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(dense, order, axis=1)


def assert_same_topk(indices, values, dense, k, atol=1e-4):
    """Same active features (value > atol) and values as the reference, ties and float noise aside.

    A row may legitimately differ only where the k-th and (k+1)-th reference values are within `atol` (a near-tie).
    """
    ref_idx, ref_val = reference_topk(dense, k)
    np.testing.assert_allclose(values, np.maximum(ref_val, 0), atol=atol, rtol=1e-4)
    sorted_desc = np.all(np.diff(values, axis=1) <= 1e-6)
    assert sorted_desc, "rows must be sorted by value descending"
    for r in range(dense.shape[0]):
        ours = {int(i) for i, v in zip(indices[r], values[r]) if v > atol}
        theirs = {int(i) for i, v in zip(ref_idx[r], ref_val[r]) if v > atol}
        if ours != theirs:
            full = np.sort(dense[r])[::-1]
            kth, nxt = full[k - 1], full[k] if full.size > k else -np.inf
            assert abs(kth - nxt) <= atol or min(ref_val[r]) <= 2 * atol, f"row {r}: {ours ^ theirs}"
        np.testing.assert_allclose(dense[r, indices[r][values[r] > atol]], values[r][values[r] > atol],
                                   atol=atol, rtol=1e-4)

