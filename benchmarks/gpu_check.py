"""Is this CUDA machine ready for `base`? The CUDA tests, then one timed epoch per architecture.

    .venv/bin/python benchmarks/gpu_check.py                     # `make gpu-check`, on a CUDA machine
    .venv/bin/python benchmarks/gpu_check.py --device cpu --quick --output /tmp/gpu_check.json

1. `pytest -m cuda`: a bf16 autocast step, channels_last, a resume after a kill, a 2-step fit of
   every architecture (tests/training/test_gpu_ready.py). Each has a CPU twin that every `pytest`
   runs; without CUDA the cuda tests are skipped, saying why.
2. For each architecture, its `base` phase1 run that trains the most parameters (``ARCH_RUNS``),
   with random weights (the check needs no model hub): one epoch of `dermascreen.training.fit` at
   the `base` model config, batch size, lr, augmentation and precision (`auto`: bf16 autocast +
   channels_last on CUDA), on random uint8 images of DermaMNIST's split sizes at the `base` image
   size. Records train images/s (Ignite's epoch time, warm-up included), the validation pass time
   and the peak GPU memory (`torch.cuda.max_memory_allocated`).

`--device cpu --quick` is the smallest form, for any machine: only tests/training/test_gpu_ready.py
(its cuda tests skipped), one batch of at most 8 images per split. It proves the script; its
figures mean nothing. Writes benchmarks/results/gpu_check.json (or --output); exits 1, saying
why, when CUDA is absent (without --device cpu), a test fails or the check overruns 8 minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import torch
from kedro.config import OmegaConfigLoader

from dermascreen import settings
from dermascreen.data.medmnist_info import split_sizes
from dermascreen.io import atomic_write
from dermascreen.models import build_model
from dermascreen.preflight import torch_and_driver
from dermascreen.training import fit
from dermascreen.training.device import resolve_precision

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "benchmarks" / "results" / "gpu_check.json"
CUDA_TESTS = "tests/training/test_gpu_ready.py"
BUDGET_S = 8 * 60
QUICK_BATCH = 8
# Per architecture, the base phase1 run with the most trainable parameters (unfreeze: all, the
# widest head): the slowest epoch and the highest memory of the grid.
ARCH_RUNS = {"cnn": "CNN_v3", "resnet50": "ResNet_v3", "vgg16": "VGG_v3",
             "efficientnet_b0": "EffNet_v3", "vit": "ViT_MAE"}
# Random images: any normalisation will do (the time of a step does not depend on it).
NORMALIZATION = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


def base_parameters() -> dict:
    """The `base` profile's parameters, resolved as `kedro run --env base` resolves them."""
    return OmegaConfigLoader(str(ROOT / "conf"), env="base", **settings.CONFIG_LOADER_ARGS)["parameters"]


def base_runs(parameters: dict) -> dict[str, dict]:
    """``arch -> {"run", "model", "training"}`` of ``ARCH_RUNS`` with random weights.

    A ViT run takes its encoder's architecture from ``pretraining.shared.encoder``, as the grid
    does from the pretrained encoder it names.
    """
    phase1 = parameters["phase1"]
    runs = {}
    for arch, run in ARCH_RUNS.items():
        spec = phase1["architectures"][run]
        model = {**spec["model"], "num_classes": 2, "weights": "none"}
        if model["arch"] != arch:
            raise ValueError(f"phase1.architectures.{run} is arch {model['arch']!r}, gpu_check expects {arch!r}")
        if arch == "vit":
            model = {**parameters["pretraining"]["shared"]["encoder"], **model}
        training = {**phase1["training"], "lr": spec["lr"], "batch_size": spec["batch_size"]}
        runs[arch] = {"run": run, "model": model, "training": training}
    return runs


def random_split(n: int, image_size: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` random uint8 images with binary labels, both classes present."""
    rng = np.random.default_rng(seed)
    return {"images": rng.integers(0, 256, (n, image_size, image_size, 3), dtype=np.uint8),
            "binary": np.arange(n, dtype=np.int64) % 2}


def time_epoch(arch: str, run: dict, device: torch.device, image_size: int, quick: bool) -> dict:
    """One epoch of ``fit`` for ``run`` on ``device``: throughput, validation time, peak memory."""
    training = {**run["training"], "epochs": 1, "device": device.type, "progress": False}
    sizes = split_sizes()
    if quick:
        training["batch_size"] = min(training["batch_size"], QUICK_BATCH)
        sizes = {"train": training["batch_size"], "val": training["batch_size"]}
    train, val = random_split(sizes["train"], image_size, 0), random_split(sizes["val"], image_size, 1)
    torch.manual_seed(training["seed"])
    model = build_model(run["model"])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = fit(model, train, val, training, None, NORMALIZATION, label_key="binary")
    epoch = result.history[0]
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"arch": arch, "run": run["run"], "batch_size": training["batch_size"], "lr": training["lr"],
            "precision": resolve_precision(device, training["precision"]), "train_images": len(train["images"]),
            "train_s": round(epoch["train_time_s"], 3),
            "train_images_per_s": round(len(train["images"]) / epoch["train_time_s"], 1),
            "val_images": len(val["images"]), "val_s": round(epoch["val_time_s"], 3),
            "peak_memory_mib": None if peak is None else round(peak, 1),
            "train_loss": epoch["train_loss"]}


def run_cuda_tests(quick: bool) -> dict:
    """`pytest -m cuda` (the whole suite, or only ``CUDA_TESTS`` with ``quick``); counts from its JUnit XML."""
    with tempfile.TemporaryDirectory() as folder:
        junit = Path(folder) / "junit.xml"
        command = ["pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider"] + ([CUDA_TESTS] if quick else [])
        print("gpu_check:", " ".join(command), flush=True)
        start = time.perf_counter()
        returncode = subprocess.run([sys.executable, "-m", *command, f"--junitxml={junit}"], cwd=ROOT).returncode
        suites = ET.parse(junit).getroot() if junit.is_file() else ET.Element("testsuite")
    suite = suites if suites.tag == "testsuite" else suites.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    return {"command": " ".join(command), "returncode": returncode,
            "seconds": round(time.perf_counter() - start, 1), **counts,
            "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]}


def problems_of(report: dict) -> list[str]:
    """What makes this check fail: failed tests, skipped cuda tests on a GPU, a NaN loss, an overrun."""
    tests, problems = report["tests"], []
    if tests["returncode"] or tests["failures"] or tests["errors"]:
        problems.append(f"cuda tests failed ({tests['failures']} failures, {tests['errors']} errors; "
                        f"pytest exit {tests['returncode']}): see the pytest output above")
    if report["device"] == "cuda" and (tests["skipped"] or not tests["passed"]):
        problems.append(f"{tests['skipped']} cuda test(s) skipped, {tests['passed']} passed on a CUDA machine: "
                        "the tests do not see the GPU the script sees")
    problems += [f"{row['arch']}: train loss {row['train_loss']} after one epoch" for row in report["epochs"]
                 if not math.isfinite(row["train_loss"])]
    if report["total_s"] > BUDGET_S:
        problems.append(f"the check took {report['total_s']:.0f} s, over its {BUDGET_S} s budget")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true",
                        help="the smallest form: the cuda test file only, one batch of at most 8 per split")
    parser.add_argument("--archs", nargs="+", choices=list(ARCH_RUNS), default=list(ARCH_RUNS))
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: torch {torch.__version__} (built for CUDA {torch.version.cuda}) sees no CUDA GPU, "
              "so nothing was checked. Run `make gpu-check` on a machine with an NVIDIA GPU and a driver "
              "that this torch build supports; `--device cpu --quick` checks the script itself.",
              file=sys.stderr)
        return 1
    device = torch.device(args.device)
    start = time.perf_counter()
    tests = run_cuda_tests(args.quick)
    parameters = base_parameters()
    image_size = parameters["data_engineering"]["image_size"]
    runs = base_runs(parameters)
    epochs = []
    for arch in args.archs:
        row = time_epoch(arch, runs[arch], device, image_size, args.quick)
        epochs.append(row)
        peak = "n/a" if row["peak_memory_mib"] is None else f"{row['peak_memory_mib']:.0f} MiB"
        print(f"gpu_check: {arch:<16} {row['run']:<10} batch {row['batch_size']:>3}  "
              f"{row['train_images_per_s']:>9.1f} train images/s  val {row['val_s']:.2f} s  peak memory {peak}",
              flush=True)
    report = {
        "benchmark": "gpu_check", "device": device.type, "quick": args.quick,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "driver": torch_and_driver(),  # torch's CUDA and nvidia-smi's GPUs and driver, as the preflight prints
        "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "machine": platform.processor() or platform.machine(), "image_size": image_size,
        "input": "random uint8 images; " + ("one batch per split" if args.quick
                                             else f"DermaMNIST split sizes {split_sizes()}"),
        "tests": tests, "epochs": epochs,
    }
    report["total_s"] = round(time.perf_counter() - start, 1)
    report["problems"] = problems_of(report)
    with atomic_write(args.output, suffix=".json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"gpu_check: {report['total_s']} s in all; wrote {args.output}")
    for problem in report["problems"]:
        print(f"gpu_check: FAILED: {problem}", file=sys.stderr)
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
