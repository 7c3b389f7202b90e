"""A toy lesion task (bright square = malignant), a tiny network (trainings of a second or less) and
the helpers that check training runs against each other.

A plain module (not conftest) so that test files and spawned distributed workers can import it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

NORMALIZATION = {"mean": [0.3, 0.3, 0.3], "std": [0.2, 0.2, 0.2]}
# a quiet, short job on the CPU; tests override what they exercise
BASE_CONFIG = {"epochs": 3, "batch_size": 16, "lr": 1e-2, "device": "cpu", "precision": "fp32",
               "progress": False, "seed": 3}


def toy_split(n: int, seed: int, size: int = 8) -> dict[str, np.ndarray]:
    """uint8 (n, size, size, 3) noise; malignant images (binary 1) carry a bright central square.

    ``labels`` uses 4 (mel) for malignant and a benign class spread over 0..6 otherwise, so the
    7-class task is learnable only in part, as the real one.
    """
    rng = np.random.default_rng(seed)
    binary = rng.integers(0, 2, n)
    images = rng.integers(0, 120, (n, size, size, 3)).astype(np.uint8)
    images[binary == 1, size // 4:3 * size // 4, size // 4:3 * size // 4, :] += 100
    labels = np.where(binary == 1, 4, rng.choice([0, 1, 2, 3, 5, 6], n))
    return {"images": images, "labels": labels.astype(np.int64), "binary": binary.astype(np.int64)}


def tiny_net(num_classes: int = 2, seed: int = 0) -> nn.Module:
    """Conv -> BatchNorm (buffers) -> Dropout (randomness) -> linear head; seeded initialisation."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))


TIMES = ("train_time_s", "val_time_s")


class SimulatedKill(Exception):
    """Raised inside a training step, as a killed process would stop there."""


def count_train_batches(model: nn.Module, fail_after: int | None = None) -> list[int]:
    """Count the model's training-mode forwards; raise SimulatedKill on forward ``fail_after + 1``."""
    calls = [0]

    def hook(module: nn.Module, args: tuple) -> None:
        if module.training:
            calls[0] += 1
            if fail_after is not None and calls[0] > fail_after:
                raise SimulatedKill(f"killed at training batch {calls[0]}")

    model.register_forward_pre_hook(hook)
    return calls


def without_times(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMES} for row in history]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
