"""From the data contract's uint8 arrays to normalised float batches on the training device.

Images travel as uint8 (4x smaller than float32) and become floats only on the device.
"""

from __future__ import annotations

import itertools
from typing import Iterator

import ignite.distributed as idist
import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset


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


def tensor_dataset(split: dict, label_key: str) -> TensorDataset:
    return TensorDataset(torch.from_numpy(np.ascontiguousarray(split["images"])),
                         torch.from_numpy(np.asarray(split[label_key], dtype=np.int64)))


class EpochSampler(DistributedSampler):
    """This rank's share of a permutation drawn from (seed, epoch), optionally cut to ``max_samples``.

    The order depends only on the seed and the epoch set by ``set_epoch``, never on a generator's
    history, so a run resumed at epoch e sees the batches an uninterrupted run would.
    """

    def __init__(self, dataset: TensorDataset, seed: int, max_samples: int | None = None):
        super().__init__(dataset, num_replicas=idist.get_world_size(), rank=idist.get_rank(), shuffle=True, seed=seed)
        self.max_samples = self.num_samples if max_samples is None else min(max_samples, self.num_samples)

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.max_samples)

    def __len__(self) -> int:
        return self.max_samples


def train_loader(split: dict, label_key: str, batch_size: int, seed: int, num_workers: int = 0,
                 max_batches: int | None = None) -> DataLoader:
    """Shuffled batches of (uint8 images, labels); ``batch_size`` is global, split across ranks."""
    dataset = tensor_dataset(split, label_key)
    rank_batch = max(batch_size // idist.get_world_size(), 1)
    sampler = EpochSampler(dataset, seed, None if max_batches is None else max_batches * rank_batch)
    return idist.auto_dataloader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers)


def eval_loader(split: dict, label_key: str, batch_size: int, num_workers: int = 0) -> DataLoader:
    """Every sample once, in order, on every rank: metrics are exact and identical across ranks."""
    return DataLoader(tensor_dataset(split, label_key), batch_size=batch_size, shuffle=False,
                      num_workers=num_workers)
