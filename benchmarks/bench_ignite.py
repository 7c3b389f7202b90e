"""Ignite overhead: one training epoch in ``create_trainer``'s Engine vs a hand-written PyTorch loop.

Both run the same model (same initial weights), the same batches (one ``EpochSampler`` order) and the
same augmentation draws (same seed), so they must also end with the same weights; the script checks
it. Runs alternate (plain, ignite, plain, ...) so that drifting machine load hits both alike, and the
medians of process CPU time (wall time on CUDA) are compared. Target: overhead <= 5 %.

    .venv/bin/python benchmarks/bench_ignite.py [--repeats 3] [--max-batches N] [--device cpu] [--threads N]

Data: the real DermaMNIST train split when ``DERMAMNIST_NPZ`` (or ../shared/data) has it, else random
uint8 images of the same shape. Writes benchmarks/results/ignite_overhead.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Events
from ignite.handlers import TerminateOnNan
from torch import nn

from dermascreen.io import atomic_write
from dermascreen.models import build_model
from dermascreen.training.augment import BatchAugment
from dermascreen.training.data import normalization_tensors, to_model_input, train_loader
from dermascreen.training.device import resolve_device
from dermascreen.training.engines import create_trainer

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "ignite_overhead.json"
MODEL = {"arch": "cnn", "name": "CNN_v1", "filters": 32, "depth": 3, "dropout": 0.5, "dense": 512,
         "num_classes": 2, "weights": "none"}
AUGMENT = {"rotation": 20, "shift": 0.15, "zoom": 0.1, "hflip": True, "vflip": True}
BATCH_SIZE, SEED = 64, 0


def load_train() -> tuple[dict, str]:
    path = Path(os.environ.get("DERMAMNIST_NPZ") or ROOT.parent / "shared" / "data" / "dermamnist_28_jpeg75.npz")
    if path.is_file():
        with np.load(path) as raw:
            labels = raw["train_labels"][:, 0].astype(np.int64)
            return {"images": raw["train_images"], "binary": np.isin(labels, [0, 1, 4]).astype(np.int64)}, path.name
    rng = np.random.default_rng(SEED)
    return {"images": rng.integers(0, 256, (7007, 28, 28, 3), dtype=np.uint8),
            "binary": rng.integers(0, 2, 7007)}, "random uint8 (7007, 28, 28, 3)"


def plain_epoch(model, optimizer, loss_fn, loader, augment, normalization, device) -> None:
    """The loop one would write by hand: the same work as ``create_trainer``'s step, no engine."""
    mean, std = normalization_tensors(normalization, device)
    losses = []
    for images, targets in loader:
        x = to_model_input(images.to(device, non_blocking=True), mean, std, channels_last=False)
        y = targets.to(device, non_blocking=True)
        model.train()
        x = augment(x)
        loss = loss_fn(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())


def ignite_epoch(model, optimizer, loss_fn, loader, augment, normalization, device) -> None:
    trainer = create_trainer(model, optimizer, loss_fn, device, normalization, augment)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, TerminateOnNan())
    trainer.run(loader, max_epochs=1)


def timed(run, initial: dict, loader, normalization, device) -> tuple[float, float, dict]:
    """Wall and process-CPU seconds of one epoch from ``initial`` weights, and the weights it ends with.

    CPU time counts only this process's work, so on shared cores it is far less noisy than wall time.
    """
    model = build_model(MODEL).to(device)
    model.load_state_dict(initial)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 3.0], device=device))
    augment = BatchAugment.from_config(AUGMENT).to(device)
    torch.manual_seed(SEED)  # same augmentation and dropout draws for both loops
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    run(model, optimizer, loss_fn, loader, augment, normalization, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu, copy.deepcopy(model.state_dict())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-batches", type=int, default=None, help="time only the first N batches")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    train, data_name = load_train()
    normalization = {"mean": (train["images"].reshape(-1, 3).mean(0) / 255).tolist(),
                     "std": (train["images"].reshape(-1, 3).std(0) / 255).tolist()}
    loader = train_loader(train, "binary", BATCH_SIZE, SEED, max_batches=args.max_batches)
    torch.manual_seed(SEED)
    initial = build_model(MODEL).state_dict()

    timed(plain_epoch, initial, loader, normalization, device)  # warm-up: allocator, kernels, caches
    wall: dict[str, list[float]] = {"plain": [], "ignite": []}
    cpu: dict[str, list[float]] = {"plain": [], "ignite": []}
    final: dict[str, dict] = {}
    for _ in range(args.repeats):
        for name, run in (("plain", plain_epoch), ("ignite", ignite_epoch)):
            wall_s, cpu_s, final[name] = timed(run, initial, loader, normalization, device)
            wall[name].append(wall_s)
            cpu[name].append(cpu_s)
    same = all(torch.equal(final["plain"][k], final["ignite"][k]) for k in final["plain"])
    # on a GPU the host's CPU time says little: compare wall time there
    clock = wall if device.type == "cuda" else cpu
    median = {name: statistics.median(values) for name, values in clock.items()}
    result = {
        "device": f"{device.type} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                  f"{os.cpu_count()} cores)",
        "data": data_name, "model": MODEL["name"], "batch_size": BATCH_SIZE, "batches_per_epoch": len(loader),
        "augment": AUGMENT, "repeats": args.repeats, "clock": "wall" if clock is wall else "process CPU",
        "wall_s": wall, "cpu_s": cpu, "median_plain_s": median["plain"], "median_ignite_s": median["ignite"],
        "overhead_pct": 100 * (median["ignite"] / median["plain"] - 1), "target_pct": 5.0,
        "same_final_weights": same,
    }
    with atomic_write(RESULT, suffix=".json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")

    print(f"{'loop':<8} {'median s':>9} {result['clock'] + ' s per run':<38} {'wall s per run':<38} images/s")
    for name in ("plain", "ignite"):
        runs = ", ".join(f"{t:.2f}" for t in clock[name])
        walls = ", ".join(f"{t:.2f}" for t in wall[name])
        print(f"{name:<8} {median[name]:>9.3f} {runs:<38} {walls:<38} {len(loader.sampler) / median[name]:,.0f}")
    print(f"overhead {result['overhead_pct']:+.2f} % (target <= 5 %); same final weights: {same}; "
          f"{result['device']}; data: {data_name}; wrote {RESULT.relative_to(ROOT)}")

if __name__ == "__main__":
    main()
