"""Toy splits shared by the training tests (helpers live in training_toys.py)."""

from __future__ import annotations

import numpy as np
import pytest

from training_toys import toy_split


@pytest.fixture(scope="module")
def toy_train() -> dict[str, np.ndarray]:
    return toy_split(96, seed=0)


@pytest.fixture(scope="module")
def toy_val() -> dict[str, np.ndarray]:
    return toy_split(48, seed=1)
