"""End-to-end fine-tuning of every encoder with one recipe and one budget, and its test evaluation.

Each encoder (and the same ViT from scratch) is fine-tuned on the 7-class task with
``dermascreen.training.fit``: model and epoch selection on the validation split only. The test
split enters only ``evaluate_runs``, which the pipeline's final report node calls once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dermascreen.evaluation.metrics import multiclass_metrics
from dermascreen.models.vit import ViTClassifier, build_vit, encoder_config, encoder_from_checkpoint
from dermascreen.training import fit, predict_proba

NUM_CLASSES = 7


def classifier_config(architecture: dict[str, Any], dropout: float) -> dict[str, Any]:
    """The model config that rebuilds a fine-tuned classifier (weights come from its state dict)."""
    return {"arch": "vit", **encoder_config(architecture), "num_classes": NUM_CLASSES, "weights": "none",
            "dropout": dropout}


def initial_classifier(encoder: dict[str, Any] | None, architecture: dict[str, Any], dropout: float,
                       seed: int) -> tuple[ViTClassifier, dict[str, Any]]:
    """A classifier from a pretrained encoder checkpoint, or from scratch when ``encoder`` is None."""
    torch.manual_seed(seed)  # the head (and, from scratch, the encoder) initialisation
    if encoder is None:
        config = classifier_config(architecture, dropout)
        return build_vit(config), config
    config = classifier_config(encoder["config"], dropout)
    return ViTClassifier(encoder_from_checkpoint(encoder, f"encoder of {encoder.get('method')}"),
                         NUM_CLASSES, dropout), config


def finetune_runs(encoder: dict[str, Any] | None, architecture: dict[str, Any], train: dict, val: dict,
                  normalization: dict, training: dict[str, Any], seeds: list[int], dropout: float = 0.0,
                  method: str = "vit") -> list[dict[str, Any]]:
    """One fine-tuned checkpoint per seed: ``{"method", "seed", "config", "state_dict",
    "normalization", "best_epoch", "val_metrics", "history", "hardware", "pretraining_hardware"}``
    (the device, precision and device model of the fine-tuning, and of the encoder's pretraining)."""
    runs = []
    for seed in seeds:
        model, config = initial_classifier(encoder, architecture, dropout, seed)
        result = fit(model, train, val, {**training, "seed": seed}, None, normalization, label_key="labels")
        runs.append({"method": method, "seed": seed, "config": config, "state_dict": result.state_dict,
                     "normalization": normalization, "best_epoch": result.best_epoch,
                     "val_metrics": _scalars(result.best_metrics), "history": result.history,
                     "hardware": result.hardware,
                     "pretraining_hardware": encoder.get("hardware") if encoder is not None else None})
    return runs


def evaluate_runs(runs: list[dict[str, Any]], split: dict, normalization: dict,
                  device: str = "auto") -> list[dict[str, Any]]:
    """``multiclass_metrics`` of every fine-tuned run on ``split`` (the test split, once)."""
    results = []
    for run in runs:
        model = build_vit(run["config"])
        model.load_state_dict(run["state_dict"])
        proba = predict_proba(model, split["images"], normalization, batch_size=256, device=device)
        results.append({"seed": run["seed"], **multiclass_metrics(np.asarray(split["labels"]), proba)})
    return results


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {key: float(value) for key, value in metrics.items() if isinstance(value, (int, float))}
