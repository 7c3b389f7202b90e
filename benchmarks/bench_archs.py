"""Train and eval images/s per architecture, fp32 against bf16 autocast + channels_last.

Each model gets the seed's input (28x28; the transfer models upsample it to 56x56 inside), batch
64, random normalised images, 2-class cross-entropy and Adam. A few warm-up steps, then a few
timed ones: a quick comparison, not a precise measurement. Runs on CPU, and on CUDA when present.

    .venv/bin/python benchmarks/bench_archs.py [--archs cnn_v1 resnet50 ...] [--steps 2] [--warmup 1] [--threads T]

Prints a table (and which precision is faster per arch and device) and writes
benchmarks/results/bench_archs.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dermascreen.io import atomic_write
from dermascreen.models import build_model

RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = {  # the seed's architectures
    "cnn_v1": {"arch": "cnn", "filters": 32, "depth": 3, "dropout": 0.5, "dense": 512},
    "cnn_v2": {"arch": "cnn", "filters": 64, "depth": 4, "dropout": 0.4, "dense": 256},
    "cnn_v3": {"arch": "cnn", "filters": 128, "depth": 4, "dropout": 0.3, "dense": 512},
    "resnet50": {"arch": "resnet50"},
    "vgg16": {"arch": "vgg16"},
    "efficientnet_b0": {"arch": "efficientnet_b0"},
}
PRECISIONS = ("fp32", "bf16+channels_last")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(step, device: torch.device, warmup: int, steps: int) -> float:
    """Seconds per call of ``step`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def measure(name: str, device: torch.device, precision: str, batch: int, warmup: int, steps: int) -> dict:
    torch.manual_seed(0)
    model = build_model(CONFIGS[name]).to(device)
    images = torch.randn(batch, 3, 28, 28, device=device)
    labels = torch.randint(0, 2, (batch,), device=device)
    bf16 = precision != "fp32"
    if bf16:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def eval_step() -> None:
        with autocast():
            model(images)

    model.train()
    train_s = timed(train_step, device, warmup, steps)
    model.eval()
    eval_s = timed(eval_step, device, warmup, steps)
    return {"arch": name, "device": device.type, "precision": precision, "train_s_per_step": train_s,
            "train_images_per_s": batch / train_s, "eval_s_per_step": eval_s, "eval_images_per_s": batch / eval_s}


def faster(rows: list[dict]) -> dict[str, str]:
    """``"<arch>@<device>" -> precision`` with the higher train throughput."""
    best: dict[str, dict] = {}
    for row in rows:
        key = f"{row['arch']}@{row['device']}"
        if key not in best or row["train_images_per_s"] > best[key]["train_images_per_s"]:
            best[key] = row
    return {key: row["precision"] for key, row in best.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice); 1 avoids OpenMP stalls on a busy machine")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"{'arch':<16} {'device':<6} {'precision':<19} {'train s/step':>12} {'train img/s':>11} "
          f"{'eval s/step':>11} {'eval img/s':>10}")
    rows = []
    for device in devices:
        for name in args.archs:
            for precision in PRECISIONS:
                row = measure(name, device, precision, args.batch, args.warmup, args.steps)
                rows.append(row)
                print(f"{name:<16} {device.type:<6} {precision:<19} {row['train_s_per_step']:>12.3f} "
                      f"{row['train_images_per_s']:>11.0f} {row['eval_s_per_step']:>11.3f} "
                      f"{row['eval_images_per_s']:>10.0f}", flush=True)
    winners = faster(rows)
    print("faster for training: " + ", ".join(f"{key} {precision}" for key, precision in winners.items()))
    result = {"benchmark": "bench_archs", "batch": args.batch, "warmup": args.warmup, "steps": args.steps,
              "input": "28x28 (transfer models upsample to 56x56)", "torch": torch.__version__,
              "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "machine": platform.processor() or platform.machine(),
              "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
              "rows": rows, "faster_for_training": winners}
    with atomic_write(RESULTS / "bench_archs.json", suffix=".json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
