"""``python -m dermascreen.estimate --env quick``: the expected wall time of each training stage.

Every training job the profile configures (phase1's grid, phase2's strategies and seeds, each
method's pretraining once per pretraining seed, every fine-tuning seed of every encoder, the CNN
reference) is timed for a few real steps on
this machine, with its model, batch size, device and precision (the calibration), then multiplied
by its configured size: epochs x batches of the train split, plus a validation pass per epoch
(counted as a third of a training step per batch: a forward without backward). The estimate is an
upper bound where a run may stop early (patience) and does not count data preparation, reports,
phase3 (under a minute each on 2 CPU cores, docs/results.md) and the start of each DVC stage's
process (about 10 s on 2 CPU cores: most of a short grid run's time). ``make all`` prints it first.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dermascreen.data.medmnist_info import split_sizes
from dermascreen.models import build_model
from dermascreen.preflight import parameter_counts
from dermascreen.profile import profile_config
from dermascreen.training.device import autocast_context, resolve_device, resolve_precision

EVAL_STEP_FRACTION = 1 / 3  # a validation batch: the forward pass of a training step
CALIBRATION_STEPS = 3  # timed steps per job kind, after one untimed warm-up step


@dataclass(frozen=True)
class Job:
    """``count`` runs (seeds, weightings) of ``epochs`` epochs of one model at one batch size."""

    stage: str
    label: str
    count: int
    epochs: int
    batches_per_epoch: int
    val_batches: int
    step: Callable[[], float]  # calibrates: seconds of one training step


def expected_seconds(job: Job) -> float:
    """The job's training and validation steps at its calibrated step time."""
    steps = job.batches_per_epoch + EVAL_STEP_FRACTION * job.val_batches
    return job.count * job.epochs * steps * job.step()


def _batches(n: int, batch_size: int, cap: int | None = None) -> int:
    batches = math.ceil(n / batch_size)
    return min(batches, cap) if cap else batches


def _median_step_seconds(step: Callable[[], None]) -> float:
    step()  # warm-up: allocations, kernel selection
    times = []
    for _ in range(CALIBRATION_STEPS):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@lru_cache(maxsize=None)
def classifier_step_seconds(config_json: str, batch_size: int, image_size: int, device: str, precision: str) -> float:
    """Seconds of one AdamW training step of the model config (random weights and images)."""
    target = resolve_device(device)
    model = build_model(json.loads(config_json)).to(target).train()
    precision = resolve_precision(target, precision)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-4)
    images = torch.randn(batch_size, 3, image_size, image_size, device=target)
    labels = torch.randint(0, 2, (batch_size,), device=target)

    def step() -> None:
        with autocast_context(target, precision):
            loss = torch.nn.functional.cross_entropy(model(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if target.type == "cuda":
            torch.cuda.synchronize()

    return _median_step_seconds(step)


@lru_cache(maxsize=None)
def pretraining_step_seconds(method: str, shared_json: str, options_json: str, image_size: int) -> float:
    """Seconds of one step of ``method``'s real pretrainer on random images."""
    from dermascreen.models.vit import ViTEncoder, encoder_config
    from dermascreen.pretraining.methods import GUIDED, build_autoencoder, build_pretrainer

    shared, options = json.loads(shared_json), json.loads(options_json)
    target = resolve_device(shared["device"])
    pretrain = {**shared["pretrain"], "seed": shared["pretrain_seeds"][0],
                "precision": resolve_precision(target, shared["pretrain"]["precision"])}
    mae = build_autoencoder(shared["encoder"], shared["decoder"], pretrain["mask_ratio"],
                            pretrain["norm_pix_loss"]).to(target)
    rng = np.random.default_rng(0)
    n = 4 * options.get("batch_size", pretrain["batch_size"])
    train = {"images": rng.integers(0, 256, (n, image_size, image_size, 3), dtype=np.uint8),
             "labels": np.arange(n) % 7}
    source = ViTEncoder(**encoder_config(shared["encoder"])).to(target) if method in GUIDED else None
    trainer = build_pretrainer(method, mae, pretrain, options, train, {"mean": [0.5] * 3, "std": [0.25] * 3},
                               source)
    images = torch.randn(pretrain["batch_size"], 3, image_size, image_size, device=target)
    trainer.train()

    def step() -> None:
        trainer.step(images, 0.5)
        if target.type == "cuda":
            torch.cuda.synchronize()

    return _median_step_seconds(step)


def jobs(parameters: Mapping[str, Any], pipelines: set[str]) -> list[Job]:
    """Every training job of ``pipelines`` in the profile's ``parameters``."""
    image_size = int(parameters["data_engineering"]["image_size"])
    sizes = split_sizes()
    n_train, n_val = sizes["train"], sizes["val"]
    found: list[Job] = []

    def classifier(stage: str, label: str, count: int, model: dict, training: dict) -> Job:
        batch_size = int(training["batch_size"])
        config = json.dumps({**model, "weights": "none", "image_size": image_size}, sort_keys=True)
        return Job(stage, label, count, int(training["epochs"]),
                   _batches(n_train, batch_size, training.get("max_train_batches")), _batches(n_val, batch_size),
                   lambda: classifier_step_seconds(config, batch_size, image_size,
                                                   str(training.get("device", "auto")),
                                                   str(training.get("precision", "auto"))))

    if "phase1" in pipelines or "phase2" in pipelines:
        phase1 = parameters["phase1"]
        encoder = parameters["pretraining"]["shared"]["encoder"]
        specs = {}
        for run in phase1["runs"]:
            arch = phase1["architectures"][run]
            model = {**arch["model"], **({**encoder, "weights": "none"} if arch["model"]["arch"] == "vit" else {})}
            training = {**phase1["training"], **arch.get("training", {}), "lr": arch["lr"],
                        "batch_size": arch["batch_size"]}
            specs[run] = (model, training)
            if "phase1" in pipelines:
                found.append(classifier("phase1", run, len(phase1["class_weights"]), model, training))
        if "phase2" in pipelines:
            phase2 = parameters["phase2"]
            # the winner is not known before phase1 ends: the grid's largest model stands for it
            model, training = max(specs.values(), key=lambda spec: parameter_counts(spec[0], parameters)[0])
            for name in phase2["runs"]:
                strategy = phase2["strategies"][name]
                found.append(classifier("phase2", name, len(phase2.get("seeds", [None])),
                                        {**model, **strategy.get("model", {})},
                                        {**training, **phase2["training"], **strategy.get("training", {}),
                                         "batch_size": strategy.get("batch_size", training["batch_size"])}))
    if "pretraining" in pipelines:
        found += _pretraining_jobs(parameters["pretraining"], image_size, n_train, n_val, classifier)
    return found


def _pretraining_jobs(pretraining: dict, image_size: int, n_train: int, n_val: int, classifier) -> list[Job]:
    from dermascreen.pretraining.methods import METHODS

    shared, finetune = pretraining["shared"], pretraining["finetune"]
    pretrain, pretrain_seeds = shared["pretrain"], len(shared["pretrain_seeds"])
    found = []
    for method in METHODS:
        options = pretraining[method]["options"]
        # MLO-MAE draws its own (smaller) batches; its step covers one level-1 update and its share of
        # the upper levels, so an epoch is the train split in its batches (an upper bound: it pretrains
        # on the split less its held-out part).
        batch_size = int(options.get("batch_size", pretrain["batch_size"]))
        shared_json = json.dumps(shared, sort_keys=True)
        found.append(Job("pretraining", f"{method} pretraining", pretrain_seeds, int(pretrain["epochs"]),
                         _batches(n_train, batch_size, pretrain.get("max_batches")), 0,
                         lambda m=method, s=shared_json, o=json.dumps(options, sort_keys=True):
                         pretraining_step_seconds(m, s, o, image_size)))
    vit = {"arch": "vit", **shared["encoder"], "num_classes": 7, "drop_path": finetune["head"]["drop_path"]}
    training = {**finetune["training"], "device": finetune["training"].get("device", shared["device"])}
    # the ViT without pretraining and one encoder per method and pretraining seed
    encoders = 1 + len(METHODS) * pretrain_seeds
    found.append(classifier("pretraining", f"ViT fine-tuning ({encoders} encoders)", encoders * len(finetune["seeds"]),
                            vit, training))
    cnn = finetune["cnn"]
    found.append(classifier("pretraining", "CNN reference", len(finetune["seeds"]),
                            {**cnn["model"], "num_classes": 7}, cnn["training"]))
    return found


def table(found: list[Job]) -> str:
    """Markdown: each job's expected minutes, each stage's sum and the total."""
    lines = ["| stage | job | runs | epochs | s/step | expected min |", "| --- | --- | --- | --- | --- | --- |"]
    stages: dict[str, float] = {}
    for job in found:
        seconds = expected_seconds(job)
        stages[job.stage] = stages.get(job.stage, 0.0) + seconds
        lines.append(f"| {job.stage} | {job.label} | {job.count} | {job.epochs} | {job.step():.3f} | "
                     f"{seconds / 60:.1f} |")
    for stage, seconds in stages.items():
        lines.append(f"| **{stage}** | all | | | | **{seconds / 60:.1f}** |")
    lines.append(f"| **total** | training only | | | | **{sum(stages.values()) / 60:.1f}** |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dermascreen.estimate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", required=True, help="profile (Kedro environment): base, quick or tiny")
    parser.add_argument("--pipelines", default="phase1,phase2,pretraining",
                        help="comma-separated pipelines to estimate (default: every training pipeline)")
    args = parser.parse_args(argv)
    with profile_config(args.env, Path.cwd()) as loader:
        parameters = loader["parameters"]
    torch.manual_seed(0)
    print(f"dermascreen: expected training time of profile '{args.env}' on this machine "
          f"(calibrated now, {CALIBRATION_STEPS} steps per job):")
    print(table(jobs(parameters, set(args.pipelines.split(",")))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
