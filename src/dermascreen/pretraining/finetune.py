"""End-to-end fine-tuning of every encoder with one recipe and one budget, and its test evaluation.

Each encoder (and the same ViT from scratch) is fine-tuned on the 7-class task with
``dermascreen.training.fit`` and MAE's fine-tuning recipe (AdamW, layer-wise lr decay, drop-path,
label smoothing, warmup + cosine; the ``finetune`` parameters): model and epoch selection on the
validation split only. The supervised CNN reference is trained by the same ``fit`` with its own
recipe. The test split enters only ``evaluate_runs``, which the pipeline's final report node calls
once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dermascreen.evaluation.metrics import multiclass_metrics
from dermascreen.models.factory import build_model
from dermascreen.models.vit import ViTClassifier, encoder_config, encoder_from_checkpoint
from dermascreen.training import fit, predict_proba
from dermascreen.training.engines import LiveLog

NUM_CLASSES = 7
# Builds the initial model of a fine-tuning seed: seed -> (model, the config that rebuilds it).
ModelBuilder = Callable[[int], tuple[nn.Module, dict[str, Any]]]


def vit_classifier(encoder: dict[str, Any] | None, architecture: dict[str, Any],
                   head: dict[str, Any]) -> ModelBuilder:
    """Classifiers from a pretrained encoder checkpoint, or from scratch when ``encoder`` is None.

    ``head``: ``dropout`` before the linear head and the encoder's ``drop_path`` while fine-tuning.
    """
    def build(seed: int) -> tuple[nn.Module, dict[str, Any]]:
        torch.manual_seed(seed)  # the head (and, from scratch, the encoder) initialisation
        source = architecture if encoder is None else encoder["config"]
        config = {"arch": "vit", **encoder_config(source), "drop_path": head["drop_path"],
                  "num_classes": NUM_CLASSES, "weights": "none", "dropout": head["dropout"]}
        if encoder is None:
            return build_model(config), config
        fine_tuned = {**encoder, "config": {**encoder["config"], "drop_path": head["drop_path"]}}
        model = ViTClassifier(encoder_from_checkpoint(fine_tuned, f"encoder of {encoder.get('method')}"),
                              NUM_CLASSES, head["dropout"])
        return model, config

    return build


def supervised_classifier(model_config: dict[str, Any]) -> ModelBuilder:
    """A model of the factory (the CNN reference) with a 7-class head, initialised per seed."""
    def build(seed: int) -> tuple[nn.Module, dict[str, Any]]:
        torch.manual_seed(seed)
        config = {**model_config, "num_classes": NUM_CLASSES}
        return build_model(config), config

    return build


def balanced_class_weights(labels: np.ndarray, power: float) -> list[float] | None:
    """Per-class loss weights ``(N / (K * n_c)) ** power``: 1 is scikit-learn's "balanced", 0 none
    (None). Between them, rare classes (df: 1.1% of train) gain weight without nv's precision collapsing."""
    if power == 0:
        return None
    counts = np.bincount(np.asarray(labels), minlength=NUM_CLASSES)
    if (counts == 0).any():
        raise ValueError(f"class weights: a class has no training image (counts {counts.tolist()})")
    return ((counts.sum() / (NUM_CLASSES * counts)) ** power).tolist()


def finetune_runs(build: ModelBuilder, train: dict, val: dict, normalization: dict, training: dict[str, Any],
                  seeds: list[int], method: str, pretraining_hardware: dict | None = None,
                  state_dir: str | Path | None = None, class_weights: list[float] | None = None,
                  live_dir: str | Path | None = None, live_run: str = "finetune") -> list[dict]:
    """One fine-tuned checkpoint per seed: ``{"method", "seed", "config", "state_dict",
    "normalization", "best_epoch", "val_metrics", "history", "hardware", "pretraining_hardware"}``
    (the device, precision and device model of the fine-tuning, and of the encoder's pretraining).

    With ``state_dir``, each seed's run keeps its resumable state in ``state_dir/seed<k>``.
    ``class_weights``: the 7 classes' loss weights (``balanced_class_weights``), None for none.
    With ``live_dir``, each seed's per-epoch metrics go to DVCLive as run ``<live_run>/seed<k>``.
    """
    runs = []
    for seed in seeds:
        model, config = build(seed)
        checkpoint_dir = None if state_dir is None else Path(state_dir) / f"seed{seed}"
        live = None if live_dir is None else LiveLog(live_dir, f"{live_run}/seed{seed}")
        result = fit(model, train, val, {**training, "seed": seed}, class_weights, normalization, label_key="labels",
                     checkpoint_dir=checkpoint_dir, model_config=config, live=live)
        runs.append({"method": method, "seed": seed, "config": config, "state_dict": result.state_dict,
                     "normalization": normalization, "best_epoch": result.best_epoch,
                     "val_metrics": _scalars(result.best_metrics), "history": result.history,
                     "hardware": result.hardware, "pretraining_hardware": pretraining_hardware})
    return runs


def run_probabilities(runs: list[dict[str, Any]], split: dict, normalization: dict,
                      device: str = "auto") -> list[np.ndarray]:
    """Each fine-tuned run's class probabilities (N, 7) on ``split`` (the test split, once)."""
    probabilities = []
    for run in runs:
        model = build_model(run["config"])
        model.load_state_dict(run["state_dict"])
        probabilities.append(predict_proba(model, split["images"], normalization, batch_size=256, device=device))
    return probabilities


def evaluate_runs(runs: list[dict[str, Any]], probabilities: list[np.ndarray], labels: np.ndarray) -> list[dict]:
    """``multiclass_metrics`` of every run from its probabilities, with its fine-tuning seed and its
    encoder's pretraining seed (None without pretraining)."""
    return [{"seed": run["seed"], "pretrain_seed": run.get("pretrain_seed"),
             **multiclass_metrics(np.asarray(labels), proba)}
            for run, proba in zip(runs, probabilities, strict=True)]


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {key: float(value) for key, value in metrics.items() if isinstance(value, (int, float))}
