"""The Ignite engine every pretraining method runs in.

A method is a ``Pretrainer``: it owns its modules and optimisers and a small ``step`` (the
process function's body) that takes one batch of normalised images and returns its losses.
``run_pretraining`` builds the engine and attaches every handler in one place: the learning
rate schedule (linear warmup then cosine, as MAE), per-epoch loss means and throughput, and an
error on a non-finite loss.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Protocol

import numpy as np
import torch
from ignite.engine import Engine, Events
from torch import nn

logger = logging.getLogger(__name__)


class Pretrainer(Protocol):
    """What the engine needs from a method."""

    mae: nn.Module  # the MaskedAutoencoder whose encoder is the product
    optimizers: list[torch.optim.Optimizer]

    def step(self, images: torch.Tensor, progress: float) -> dict[str, float]:
        """One training iteration on images (B, 3, H, W) at ``progress`` in [0, 1) of the run."""

    def train(self, mode: bool = True) -> Any:
        """Switch the trained modules to training mode."""


class ShuffledBatches:
    """Index batches over ``n`` samples, reshuffled every epoch from a seeded generator.

    The last incomplete batch is dropped: the uniformity term and MLO-MAE's levels need full,
    equally sized batches.
    """

    def __init__(self, n: int, batch_size: int, seed: int, max_batches: int | None = None):
        if n < batch_size:
            raise ValueError(f"{n} images cannot fill one batch of {batch_size}")
        self.n, self.batch_size, self.max_batches = n, batch_size, max_batches
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        full = self.n // self.batch_size
        return full if self.max_batches is None else min(full, self.max_batches)

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator)
        return iter(order[: len(self) * self.batch_size].view(len(self), self.batch_size))


def to_model_input(images_uint8: torch.Tensor, normalization: dict[str, list[float]],
                   device: torch.device | str) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) normalised with the train mean/std, on ``device``."""
    x = images_uint8.to(device).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(normalization["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(normalization["std"], device=device).view(1, 3, 1, 1)
    return (x - mean) / std


def make_optimizer(modules: nn.Module | list[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with MAE's betas; no decay on biases, norms and tokens (parameters with < 2 dims)."""
    params = list(modules.parameters()) if isinstance(modules, nn.Module) else list(modules)
    decay = [p for p in params if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in params if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=(0.9, 0.95))


def warmup_cosine(iteration: int, warmup: int, total: int) -> float:
    """LR multiplier: linear warmup over ``warmup`` iterations, then half-cosine to 0 at ``total``."""
    if iteration < warmup:
        return (iteration + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (iteration - warmup) / max(1, total - warmup)))


def _attach_handlers(engine: Engine, pretrainer: Pretrainer, history: list[dict[str, float]],
                     warmup: int, total: int, batch_size: int) -> None:
    base_lrs = [[group["lr"] for group in opt.param_groups] for opt in pretrainer.optimizers]
    epoch_losses: list[dict[str, float]] = []
    clock = {"start": 0.0}

    @engine.on(Events.ITERATION_STARTED)
    def set_learning_rate(engine: Engine) -> None:
        factor = warmup_cosine(engine.state.iteration - 1, warmup, total)
        for opt, lrs in zip(pretrainer.optimizers, base_lrs):
            for group, lr in zip(opt.param_groups, lrs):
                group["lr"] = lr * factor

    @engine.on(Events.EPOCH_STARTED)
    def start_epoch(engine: Engine) -> None:
        epoch_losses.clear()
        clock["start"] = time.perf_counter()

    @engine.on(Events.ITERATION_COMPLETED)
    def record(engine: Engine) -> None:
        losses = engine.state.output
        if not all(math.isfinite(value) for value in losses.values()):
            raise FloatingPointError(f"non-finite pretraining loss at iteration {engine.state.iteration}: {losses}")
        epoch_losses.append(losses)

    @engine.on(Events.EPOCH_COMPLETED)
    def summarise(engine: Engine) -> None:
        seconds = time.perf_counter() - clock["start"]
        # Some losses are logged only on some iterations (MLO-MAE's upper levels): mean where present.
        keys = dict.fromkeys(key for losses in epoch_losses for key in losses)
        row = {"epoch": engine.state.epoch,
               **{key: float(np.mean([l[key] for l in epoch_losses if key in l])) for key in keys},
               "seconds": seconds, "images_per_s": len(epoch_losses) * batch_size / seconds}
        history.append(row)
        logger.info("pretraining epoch %d: %s", engine.state.epoch,
                    ", ".join(f"{key} {value:.4g}" for key, value in row.items() if key != "epoch"))


def run_pretraining(pretrainer: Pretrainer, images_uint8: np.ndarray, normalization: dict[str, list[float]],
                    epochs: int, batch_size: int, warmup_epochs: float, seed: int,
                    device: torch.device | str = "cpu", max_batches: int | None = None) -> list[dict[str, float]]:
    """Train ``pretrainer`` for ``epochs`` over ``images_uint8`` (N, H, W, 3); per-epoch history.

    ``max_batches`` caps an epoch (a fresh random subset each epoch): small profiles' budget.
    """
    torch.manual_seed(seed)
    images = torch.from_numpy(np.ascontiguousarray(images_uint8))
    batches = ShuffledBatches(len(images), batch_size, seed, max_batches)
    total = epochs * len(batches)

    def process(engine: Engine, indices: torch.Tensor) -> dict[str, float]:
        pretrainer.train()
        progress = (engine.state.iteration - 1) / total
        return pretrainer.step(to_model_input(images[indices], normalization, device), progress)

    engine = Engine(process)
    history: list[dict[str, float]] = []
    _attach_handlers(engine, pretrainer, history, round(warmup_epochs * len(batches)), total, batch_size)
    engine.run(batches, max_epochs=epochs)
    return history
