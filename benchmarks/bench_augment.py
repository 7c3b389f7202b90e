"""Batched on-device augmentation (BatchAugment) against a per-sample torchvision.transforms.v2 pipeline.

Both apply the seed's augmentation (rotation 20 deg, shift 15%, zoom 10%, both flips) to the DermaMNIST
train images, batch 64, and produce float batches: the baseline through a DataLoader over a Dataset
whose ``__getitem__`` transforms one uint8 image; BatchAugment on whole uint8 -> float batches.
Target: BatchAugment >= 10x the per-sample pipeline.

    .venv/bin/python benchmarks/bench_augment.py [--images N] [--workers W] [--device cpu|cuda] [--threads T]

Prints a table and writes benchmarks/results/bench_augment.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from dermascreen.io import atomic_write
from dermascreen.training.augment import BatchAugment

RESULTS = Path(__file__).resolve().parent / "results"
SHARED_NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "dermamnist_28_jpeg75.npz"
TARGET_SPEEDUP = 10.0


def train_images(count: int) -> tuple[np.ndarray, str]:
    """(N, 28, 28, 3) uint8 train images and where they came from."""
    path = Path(os.environ.get("DERMAMNIST_NPZ") or SHARED_NPZ)
    if path.is_file():
        with np.load(path) as archive:
            return archive["train_images"][:count], f"{path.name} train split"
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (count, 28, 28, 3), dtype=np.uint8), f"random uint8 ({path} absent)"


class PerSampleDataset(Dataset):
    """One uint8 image -> the same augmentation, per sample, as torchvision v2 transforms."""

    def __init__(self, images: np.ndarray):
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # (N, 3, 28, 28) uint8
        self.transform = v2.Compose([
            v2.RandomAffine(degrees=20, translate=(0.15, 0.15), scale=(0.9, 1.1)),
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            v2.ToDtype(torch.float32, scale=True),
        ])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(self.images[index])


def time_per_sample(images: np.ndarray, batch: int, workers: int) -> float:
    loader = DataLoader(PerSampleDataset(images), batch_size=batch, num_workers=workers)
    start = time.perf_counter()
    for augmented in loader:
        assert augmented.dtype == torch.float32
    return time.perf_counter() - start


def time_batched(images: np.ndarray, batch: int, device: torch.device) -> float:
    augment = BatchAugment().to(device)
    data = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # uint8 until the device, as in training
    augment(data[:batch].to(device).float())  # warm-up
    start = time.perf_counter()
    for first in range(0, len(data), batch):
        augmented = augment(data[first:first + batch].to(device, non_blocking=True).float().div_(255))
    if device.type == "cuda":
        torch.cuda.synchronize()
    assert augmented.dtype == torch.float32
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048, help="train images to augment (7007: all)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of the per-sample pipeline")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice); 1 avoids OpenMP stalls on a busy machine")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images, source = train_images(args.images)
    device = torch.device(args.device)
    per_sample_s = time_per_sample(images, args.batch, args.workers)
    batched_s = time_batched(images, args.batch, device)
    rows = [
        {"method": f"torchvision v2 per sample, DataLoader workers={args.workers}", "device": "cpu",
         "seconds": per_sample_s, "images_per_s": len(images) / per_sample_s},
        {"method": "BatchAugment (affine_grid + grid_sample per batch)", "device": str(device),
         "seconds": batched_s, "images_per_s": len(images) / batched_s},
    ]
    speedup = per_sample_s / batched_s
    result = {"benchmark": "bench_augment", "images": len(images), "source": source, "batch": args.batch,
              "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "machine": platform.processor() or platform.machine(), "rows": rows, "speedup": speedup,
              "target_speedup": TARGET_SPEEDUP, "meets_target": speedup >= TARGET_SPEEDUP}
    print(f"augmentation of {len(images)} images ({source}), batch {args.batch}, {torch.get_num_threads()} threads")
    print(f"{'method':<58} {'device':<7} {'seconds':>8} {'images/s':>10}")
    for row in rows:
        print(f"{row['method']:<58} {row['device']:<7} {row['seconds']:>8.2f} {row['images_per_s']:>10.0f}")
    print(f"speedup {speedup:.1f}x (target >= {TARGET_SPEEDUP:.0f}x): {'met' if result['meets_target'] else 'NOT met'}")
    with atomic_write(RESULTS / "bench_augment.json", suffix=".json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["meets_target"] else 1)
