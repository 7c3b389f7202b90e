"""Session-wide test settings and fixtures (helpers: project_helpers.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest
import torch

from project_helpers import real_npz_path

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def one_thread() -> Iterator[None]:
    """Test-sized tensors gain nothing from threads and, on shared cores, lose a lot
    (a toy fit: 0.1 s on one thread, 3 s on two). Session-wide, so module fixtures that train run on
    the same thread count as the tests comparing with them (float sums depend on it)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def real_npz() -> Path:
    path = real_npz_path()
    if path is None:
        pytest.skip("real DermaMNIST file absent: set DERMAMNIST_NPZ (see ../shared/data/SOURCES.md)")
    return path


