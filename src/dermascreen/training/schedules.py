"""The learning-rate schedule shared by fine-tuning (``fit``) and pretraining (``run_pretraining``)."""

from __future__ import annotations

import math


def warmup_cosine(iteration: int, warmup: int, total: int) -> float:
    """LR multiplier: linear warmup over ``warmup`` iterations, then half-cosine to 0 at ``total`` (MAE)."""
    if iteration < warmup:
        return (iteration + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (iteration - warmup) / max(1, total - warmup))))
