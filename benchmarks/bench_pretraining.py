"""Pretraining throughput (training images per second) of every method on one profile's sizes.

Each method's full training step (its ``pretrain.augment`` augmentation included; MLO-MAE: averaged
over its unroll cycle, upper levels included) runs on DermaMNIST train images with the encoder,
decoder, batch size and method options of ``conf/<env>/parameters_pretraining.yml`` (soft-merged
over base). SemMAE and AutoMAE get a randomly initialised source encoder: their cost does not
depend on its weights.

    .venv/bin/python benchmarks/bench_pretraining.py [--env quick] [--steps 6] [--device cpu] [--threads 1]

On the CPU the time is the process's CPU time (``time.process_time``), the median of
``--repeats`` timed rounds: on a machine shared with other jobs, wall time measures the others.

With each method's compute per step (``engine.ComputeCounter``: tokens through every ViT encoder,
forward passes of each module). Prints a table and writes benchmarks/results/bench_pretraining.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from kedro.config import OmegaConfigLoader

from dermascreen import settings
from dermascreen.io import atomic_write
from dermascreen.models.vit import ViTEncoder, encoder_config
from dermascreen.pretraining.engine import ComputeCounter
from dermascreen.pretraining.methods import METHODS, build_autoencoder, build_pretrainer
from dermascreen.training.data import normalization_tensors, to_model_input
from dermascreen.training.device import resolve_precision

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED_NPZ = ROOT.parent / "shared" / "data" / "dermamnist_28_jpeg75.npz"


def train_split(count: int) -> tuple[dict, str]:
    path = Path(os.environ.get("DERMAMNIST_NPZ") or SHARED_NPZ)
    if path.is_file():
        with np.load(path) as archive:
            images, labels = archive["train_images"][:count], archive["train_labels"][:count, 0]
        return {"images": images, "labels": labels.astype(np.int64)}, f"{path.name} train split"
    rng = np.random.default_rng(0)
    return ({"images": rng.integers(0, 256, (count, 28, 28, 3), dtype=np.uint8),
             "labels": np.arange(count) % 7}, f"random uint8 ({path} absent)")


def measure(method: str, params: dict, data: dict, normalization: dict, steps: int, device: str,
            repeats: int) -> tuple[float, dict]:
    """(images per second, ``ComputeCounter`` summary of the timed steps)."""
    shared = params["shared"]
    pretrain = {**shared["pretrain"], "seed": 0,
                "precision": resolve_precision(torch.device(device), shared["pretrain"]["precision"])}
    torch.manual_seed(0)
    mae = build_autoencoder(shared["encoder"], shared["decoder"], pretrain["mask_ratio"]).to(device)
    source = ViTEncoder(**encoder_config(shared["encoder"])).to(device)
    trainer = build_pretrainer(method, mae, pretrain, params[method]["options"], data, normalization, source)
    trainer.train()
    batch = pretrain["batch_size"]
    images = to_model_input(torch.from_numpy(data["images"][:batch]).to(device),
                            *normalization_tensors(normalization, torch.device(device)), channels_last=False)
    generator = torch.Generator().manual_seed(0)

    def step(progress: float) -> None:  # the engine's iteration: augmentation (pretrain.augment), then the step
        trainer.step(images if trainer.augment is None else trainer.augment(images, generator), progress)

    for _ in range(2):  # warm-up (and a full MLO-MAE cycle)
        step(0.0)
    compute = ComputeCounter()
    hooks = compute.attach(trainer)
    clock = time.perf_counter if device == "cuda" else time.process_time
    seconds = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = clock()
        for _ in range(steps):
            step(0.5)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds.append(clock() - start)
    for hook in hooks:
        hook.remove()
    compute.steps = steps * repeats
    return steps * batch / float(np.median(seconds)), compute.summary([])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="quick")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per method (even: whole MLO cycles)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds; the median counts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loader = OmegaConfigLoader(str(ROOT / "conf"), env=args.env, **settings.CONFIG_LOADER_ARGS)
    params = loader["parameters"]["pretraining"]
    data, source = train_split(max(512, params["shared"]["pretrain"]["batch_size"]))
    normalization = {"mean": [0.7636, 0.5372, 0.5614], "std": [0.1363, 0.1540, 0.1687]}
    measured = {m: measure(m, params, data, normalization, args.steps, args.device, args.repeats) for m in METHODS}
    rows = {method: rate for method, (rate, _) in measured.items()}
    tokens = {method: compute["encoder_tokens_per_step"] for method, (_, compute) in measured.items()}
    print(f"pretraining throughput, env {args.env}, device {args.device}, batch "
          f"{params['shared']['pretrain']['batch_size']}, {torch.get_num_threads()} threads, {source}, "
          f"{'wall' if args.device == 'cuda' else 'process CPU'} time, median of {args.repeats} rounds")
    print(f"{'method':<10}{'images/s':>10}{'vs MAE':>8}{'encoder tokens/step':>21}{'vs MAE':>8}  forward passes/step")
    for method, rate in rows.items():
        passes = ", ".join(f"{name} {n:g}" for name, n in measured[method][1]["forward_passes_per_step"].items())
        print(f"{method:<10}{rate:>10.1f}{rate / rows['mae']:>8.2f}{tokens[method]:>21.0f}"
              f"{tokens[method] / tokens['mae']:>8.2f}  {passes}")
    result = {"env": args.env, "device": args.device, "threads": torch.get_num_threads(), "data": source,
              "encoder": params["shared"]["encoder"], "batch_size": params["shared"]["pretrain"]["batch_size"],
              "steps": args.steps, "repeats": args.repeats,
              "clock": "wall" if args.device == "cuda" else "process CPU", "machine": platform.platform(),
              "images_per_s": rows, "compute": {method: compute for method, (_, compute) in measured.items()}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    with atomic_write(RESULTS / "bench_pretraining.json", suffix=".json") as tmp:
        tmp.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
