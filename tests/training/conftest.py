"""Toy splits shared by the training tests (helpers live in training_toys.py), on one thread."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pytest
import torch

from training_toys import toy_split


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Toy tensors gain nothing from threads and, on shared cores, lose a lot (a toy fit: 0.1 s vs 3 s)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def toy_train() -> dict[str, np.ndarray]:
    return toy_split(96, seed=0)


@pytest.fixture(scope="module")
def toy_val() -> dict[str, np.ndarray]:
    return toy_split(48, seed=1)
