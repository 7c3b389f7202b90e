"""From the data contract's uint8 arrays to normalised float batches on the training device.

Images stay uint8 (4x smaller than float32) and become floats only on the device, batch by batch.
"""

from __future__ import annotations

import math
from typing import Iterator

import ignite.distributed as idist
import numpy as np
import torch


def check_split(split: dict, name: str, label_key: str, num_classes: int) -> None:
    """Raise a ValueError naming ``name`` and the problem when ``split`` breaks the data contract."""
    missing = {"images", label_key} - set(split)
    if missing:
        raise ValueError(f"{name}: missing keys {sorted(missing)} (has {sorted(split)})")
    images, labels = np.asarray(split["images"]), np.asarray(split[label_key])
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{name}: 'images' must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    if labels.shape != (len(images),):
        raise ValueError(f"{name}: '{label_key}' must have shape ({len(images)},), got {labels.shape}")
    if len(labels) == 0:
        raise ValueError(f"{name}: the split is empty")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"{name}: '{label_key}' must be integers in [0, {num_classes - 1}]")


def normalization_tensors(normalization: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``{"mean": [r,g,b], "std": [r,g,b]}`` -> two (1, 3, 1, 1) float tensors on ``device``."""
    try:
        mean, std = (torch.tensor(normalization[key], dtype=torch.float32) for key in ("mean", "std"))
    except KeyError as error:
        raise ValueError(f"normalization: missing key {error} (expected 'mean' and 'std')") from None
    if mean.shape != (3,) or std.shape != (3,) or bool((std <= 0).any()):
        raise ValueError(f"normalization: expected 3 means and 3 positive stds, got {normalization}")
    return mean.view(1, 3, 1, 1).to(device), std.view(1, 3, 1, 1).to(device)


def to_model_input(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """(B, H, W, 3) uint8 on the device -> (B, 3, H, W) float32, scaled to [0, 1] then normalised."""
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


class SplitBatches:
    """Batches of (uint8 images (B, H, W, 3), int64 labels (B,)) from one split held as two tensors.

    The split lives on the training device when it fits (DermaMNIST's train split is 16 MB at
    28x28 and 1 GB at 224x224), so a step costs no host-to-device copy and no loader process;
    else it stays in pinned host memory and each batch is copied asynchronously.

    ``shuffle``: the order of epoch e is ``torch.randperm(N)`` from a generator seeded with
    ``seed + e`` (set by ``set_epoch``), as ``DistributedSampler`` draws it, and each rank takes its
    strided share; it depends only on (seed, e), so a run resumed at epoch e sees the batches an
    uninterrupted run would. Without ``shuffle`` every rank gets every sample once, in order
    (evaluation: metrics are exact and identical across ranks). ``batch_size`` is global, split
    across ranks; ``max_batches`` cuts each epoch (small profiles' budget); ``drop_last`` leaves out
    the last incomplete batch (pretraining: its batch terms and MLO-MAE's levels need full batches).
    """

    def __init__(self, split: dict, label_key: str, batch_size: int, device: torch.device, *,
                 shuffle: bool, seed: int = 0, max_batches: int | None = None, drop_last: bool = False):
        images = torch.from_numpy(np.ascontiguousarray(split["images"]))
        labels = torch.from_numpy(np.asarray(split[label_key], dtype=np.int64))
        self.device = device
        self.storage = device if _fits_on(device, images.nbytes) else torch.device("cpu")
        self.pin = self.storage != device and device.type == "cuda"
        self.images, self.labels = ((t.pin_memory() if self.pin else t.to(self.storage)) for t in (images, labels))
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        world = idist.get_world_size() if shuffle else 1
        self.rank_batch = max(batch_size // world, 1) if shuffle else batch_size
        self.rank_samples = math.ceil(len(labels) / world)
        batches = (self.rank_samples // self.rank_batch if drop_last
                   else math.ceil(self.rank_samples / self.rank_batch))
        if batches == 0:
            raise ValueError(f"{len(labels)} samples cannot fill one batch of {self.rank_batch}")
        self.num_batches = batches if max_batches is None else min(batches, max_batches)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # A generator: the order is drawn at the first batch, after the epoch's ``set_epoch``.
        order = self._order().to(self.storage)
        for start in range(0, self.num_batches * self.rank_batch, self.rank_batch):
            index = order[start:start + self.rank_batch]
            images, labels = self.images[index], self.labels[index]
            if self.pin:  # indexing a pinned tensor returns pageable memory, whose copy is not asynchronous
                images, labels = images.pin_memory(), labels.pin_memory()
            yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)

    def _order(self) -> torch.Tensor:
        n = len(self.labels)
        if not self.shuffle:
            return torch.arange(n)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        world, rank = idist.get_world_size(), idist.get_rank()
        padded = torch.cat([order, order[: self.rank_samples * world - n]])  # equal shares, as DistributedSampler
        return padded[rank::world]


def _fits_on(device: torch.device, nbytes: int) -> bool:
    """Whether a split may live on ``device``: always on the CPU, else within a quarter of free memory."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= free // 4


def train_batches(split: dict, label_key: str, batch_size: int, device: torch.device, seed: int,
                  max_batches: int | None = None, drop_last: bool = False) -> SplitBatches:
    """Shuffled training batches, this rank's share (see ``SplitBatches``)."""
    return SplitBatches(split, label_key, batch_size, device, shuffle=True, seed=seed, max_batches=max_batches,
                        drop_last=drop_last)


def eval_batches(split: dict, label_key: str, batch_size: int, device: torch.device) -> SplitBatches:
    """Every sample once, in order, on every rank."""
    return SplitBatches(split, label_key, batch_size, device, shuffle=False)
