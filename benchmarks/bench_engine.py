"""The project's training engine against a hand-written PyTorch loop, per architecture.

For each architecture of the `base` phase1 grid (fully trainable variants, random weights: the
cost of a step does not depend on the weights), both loops run the same model from the same
initial weights over the same batches (``train_batches``, held on the device), with the same
augmentation draws and the same precision and memory format, so they must also end with the same
weights; the script checks it. Runs alternate (raw, engine, raw, ...) so drifting machine load
hits both alike; medians are compared (of wall time on CUDA, of process CPU time on the CPU). Target: engine >= 95 % of the raw loop's images/s. On
CUDA the GPU busy share (kernel time / wall time, from torch.profiler) of one engine epoch is
reported too (target >= 80 % for the CNN and ResNet50).

    .venv/bin/python benchmarks/bench_engine.py [--archs CNN_v1 ResNet_v3 ...] [--batches 20]
        [--repeats 3] [--device auto] [--precision auto] [--threads N] [--out PATH]

Data: the DermaMNIST train split when ``DERMAMNIST_NPZ`` (or ../shared/data) has it, else random
uint8 images of the same shape. Writes benchmarks/results/engine_<device>.json.
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
import yaml
from torch import nn

from dermascreen.io import atomic_write
from dermascreen.models import build_model
from dermascreen.training.augment import BatchAugment
from dermascreen.training.data import normalization_tensors, to_model_input, train_batches
from dermascreen.training.device import autocast_context, kernel_settings, resolve_device, resolve_precision
from dermascreen.training.engines import create_trainer

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("CNN_v1", "CNN_v3", "ResNet_v3", "VGG_v3", "EffNet_v3")
SEED = 0


def base_grid() -> tuple[dict, dict]:
    """The `base` phase1 architectures and the shared augmentation, from conf/base."""
    phase1 = yaml.safe_load((ROOT / "conf/base/parameters_phase1.yml").read_text())["phase1"]
    augment = yaml.safe_load((ROOT / "conf/base/globals.yml").read_text())["binary_training"]["augment"]
    return phase1["architectures"], augment


def load_train() -> tuple[dict, str]:
    path = Path(os.environ.get("DERMAMNIST_NPZ") or ROOT.parent / "shared" / "data" / "dermamnist_28_jpeg75.npz")
    if path.is_file():
        with np.load(path) as raw:
            labels = raw["train_labels"][:, 0].astype(np.int64)
            return {"images": raw["train_images"], "binary": np.isin(labels, [0, 1, 4]).astype(np.int64)}, path.name
    rng = np.random.default_rng(SEED)
    return {"images": rng.integers(0, 256, (7007, 28, 28, 3), dtype=np.uint8),
            "binary": rng.integers(0, 2, 7007)}, "random uint8 (7007, 28, 28, 3)"


def raw_epoch(model, optimizer, loss_fn, batches, augment, normalization, device, precision, channels_last):
    """The loop one would write by hand: the same work as ``create_trainer``'s step, no engine."""
    mean, std = normalization_tensors(normalization, device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.train()
    for images, targets in batches:
        x = augment(to_model_input(images, mean, std, channels_last)).contiguous(memory_format=memory_format)
        with autocast_context(device, precision):
            logits = model(x)
        loss = loss_fn(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def engine_epoch(model, optimizer, loss_fn, batches, augment, normalization, device, precision, channels_last):
    create_trainer(model, optimizer, loss_fn, device, normalization, augment, precision, channels_last).run(
        batches, max_epochs=1)


def timed(run, model_config: dict, lr: float, initial: dict, batches, augment_config: dict, normalization: dict,
          device: torch.device, precision: str) -> tuple[float, dict]:
    """Seconds of one epoch from ``initial`` weights, and the weights it ends with: wall time on
    CUDA, this process's CPU time on the CPU (on shared cores far less noisy than wall time)."""
    channels_last = precision == "bf16"
    model = build_model(model_config).to(device, memory_format=torch.channels_last if channels_last
                                         else torch.preserve_format)
    model.load_state_dict(initial)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 3.0], device=device))
    augment = BatchAugment.from_config(augment_config).to(device)
    torch.manual_seed(SEED)  # same augmentation and dropout draws for both loops
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    _sync(device)
    start = clock()
    run(model, optimizer, loss_fn, batches, augment, normalization, device, precision, channels_last)
    _sync(device)
    return clock() - start, copy.deepcopy(model.state_dict())


def gpu_busy_share(*timed_args) -> float:
    """Share of one engine epoch's wall time during which CUDA kernels ran (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        wall, _ = timed(engine_epoch, *timed_args)
    kernels = sorted((e.time_range.start, e.time_range.end) for e in prof.events() if e.device_type.name == "CUDA")
    busy, end = 0.0, -1.0
    for start, stop in kernels:  # union of kernel intervals, microseconds
        busy += max(0.0, stop - max(start, end))
        end = max(end, stop)
    return busy / 1e6 / wall


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_arch(name: str, config: dict, augment: dict, train: dict, normalization: dict, device: torch.device,
               precision: str, n_batches: int, repeats: int) -> dict:
    model_config = {**config["model"], "weights": "none", "num_classes": 2}
    batches = train_batches(train, "binary", config["batch_size"], device, SEED, max_batches=n_batches)
    torch.manual_seed(SEED)
    initial = build_model(model_config).state_dict()
    timed_args = (model_config, config["lr"], initial, batches, augment, normalization, device, precision)
    timed(raw_epoch, *timed_args)  # warm-up: allocator, kernels, caches
    seconds: dict[str, list[float]] = {"raw": [], "engine": []}
    final: dict[str, dict] = {}
    for _ in range(repeats):
        for loop, run in (("raw", raw_epoch), ("engine", engine_epoch)):
            wall, final[loop] = timed(run, *timed_args)
            seconds[loop].append(wall)
    images = len(batches) * config["batch_size"]
    rate = {loop: images / statistics.median(values) for loop, values in seconds.items()}
    row = {"arch": name, "batch_size": config["batch_size"], "batches": len(batches), "seconds": seconds,
           "raw_images_per_s": rate["raw"], "engine_images_per_s": rate["engine"],
           "engine_vs_raw_pct": 100 * rate["engine"] / rate["raw"],
           "same_final_weights": all(torch.equal(final["raw"][k], final["engine"][k]) for k in final["raw"])}
    if device.type == "cuda":
        row["gpu_busy_pct"] = 100 * gpu_busy_share(*timed_args)
        row["peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), help="phase1 architecture names (conf/base)")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per epoch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", help="fp32, bf16 or auto (bf16 on CUDA, fp32 elsewhere)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    precision = resolve_precision(device, args.precision)
    architectures, augment = base_grid()
    train, data_name = load_train()
    normalization = {"mean": (train["images"].reshape(-1, 3).mean(0) / 255).tolist(),
                     "std": (train["images"].reshape(-1, 3).std(0) / 255).tolist()}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    rows = []
    with kernel_settings(device):
        for arch in args.archs:
            rows.append(bench_arch(arch, architectures[arch], augment, train, normalization, device, precision,
                                   args.batches, args.repeats))
            row = rows[-1]
            print(f"{arch:<10} raw {row['raw_images_per_s']:>8,.0f} img/s  engine {row['engine_images_per_s']:>8,.0f} "
                  f"img/s  engine/raw {row['engine_vs_raw_pct']:5.1f} %  same weights {row['same_final_weights']}"
                  + (f"  GPU busy {row['gpu_busy_pct']:.0f} %" if "gpu_busy_pct" in row else ""), flush=True)
    result = {"device": f"{device.type} ({name}, {torch.get_num_threads()} threads, {os.cpu_count()} cores)",
              "torch": torch.__version__, "precision": precision, "data": data_name, "augment": augment,
              "clock": "wall" if device.type == "cuda" else "process CPU",
              "repeats": args.repeats, "target_engine_vs_raw_pct": 95.0, "rows": rows}
    out = args.out or ROOT / "benchmarks" / "results" / f"engine_{device.type}.json"
    with atomic_write(out, suffix=".json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['device']}, {precision}; data: {data_name}; wrote {out}")


if __name__ == "__main__":
    main()
