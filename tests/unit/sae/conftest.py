"""Shared fixtures: seeded weights and activations."""

from __future__ import annotations

import numpy as np
import pytest

from sae.testing import random_weights


@pytest.fixture
def weights():
    return random_weights(48, 640, seed=3)


@pytest.fixture
def acts():
    return (np.random.default_rng(7).standard_normal((97, 48)) * 1.5).astype(np.float32)
