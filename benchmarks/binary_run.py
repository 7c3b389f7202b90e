"""One binary training run on the profile's model input, to compare models and recipes on validation.

Needs ``kedro run --pipelines data_engineering --env quick`` first (data/05_model_input/). Trains
with ``fit`` (selecting the epoch with the best validation ROC AUC, no specificity guard), prints
each epoch's validation ROC AUC and time, then the best epoch's validation ROC AUC and
specificity at recall 0.90, with and without test-time flips, and for a model trained on the 7
classes (``supervision: labels``) its 7-class validation accuracy and balanced accuracy. With
several SEEDS (each the initialisation and training seed of one run; default 42, the grid's), the
runs one after the other, then the validation ROC AUC of their mean probability. Never reads test.

    PYTHONPATH=src .venv/bin/python benchmarks/binary_run.py MODEL_JSON TRAINING_JSON [THREADS] [W0|W3|W5] [SEEDS]
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, roc_auc_score, roc_curve

from dermascreen.models import build_model
from dermascreen.models.supervision import SummedClasses
from dermascreen.training import fit, predict_proba

DEFAULTS = {"epochs": 15, "patience": 100, "monitor": "roc_auc", "min_specificity": 0.0, "device": "cpu",
            "precision": "fp32", "progress": False,
            "augment": {"rotation": 20, "shift": 0.15, "zoom": 0.1, "hflip": True, "vflip": True}}


def specificity_at_recall(y: np.ndarray, p: np.ndarray, recall: float = 0.9) -> float:
    fpr, tpr, _ = roc_curve(y, p)
    return float(1 - fpr[np.argmax(tpr >= recall)])


def main() -> None:
    model_config, training = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    weighting = sys.argv[4] if len(sys.argv) > 4 else "W0"
    seeds = [int(seed) for seed in sys.argv[5].split(",")] if len(sys.argv) > 5 else [42]
    train, val = (dict(np.load(f"data/05_model_input/{split}.npz")) for split in ("train", "val"))
    with open("data/05_model_input/normalization.json") as f:
        normalization = json.load(f)
    with open("data/05_model_input/class_weights.json") as f:
        weights = json.load(f)[weighting]
    scores = [train_one(model_config, {**DEFAULTS, **training, "seed": seed}, train, val, normalization, weights)
              for seed in seeds]
    if len(seeds) > 1:
        print(f"ensemble of seeds {seeds} (mean probability): val_roc_auc "
              f"{roc_auc_score(val['binary'], np.mean(scores, axis=0)):.4f}")


def train_one(model_config: dict, config: dict, train: dict, val: dict, normalization: dict,
              weights: list[float]) -> np.ndarray:
    """One run (initialisation and training seed ``config["seed"]``); its validation p(malignant)."""
    torch.manual_seed(config["seed"])
    model = build_model({**model_config, "num_classes": 2})
    start = time.time()
    result = fit(model, train, val, config, weights, normalization, label_key="binary")
    for row in result.history:
        print(f"epoch {row['epoch']:2d} val_roc_auc {row['val_roc_auc']:.4f} train {row['train_time_s']:.0f}s")
    y = val["binary"]
    plain = predict_proba(model, val["images"], normalization, device="cpu")[:, 1]
    flips = np.mean([plain] + [predict_proba(model, np.ascontiguousarray(val["images"][:, ::dy, ::dx]),
                                             normalization, device="cpu")[:, 1] for dy, dx in ((1, -1), (-1, 1))],
                    axis=0)
    print(f"seed {config['seed']} best_epoch {result.best_epoch} val_roc_auc {roc_auc_score(y, plain):.4f} "
          f"val_spec@recall0.9 {specificity_at_recall(y, plain):.3f} | with flips {roc_auc_score(y, flips):.4f} "
          f"{specificity_at_recall(y, flips):.3f} | {(time.time() - start) / 60:.1f} min")
    if isinstance(model, SummedClasses):
        predicted = predict_proba(model.net, val["images"], normalization, device="cpu").argmax(axis=1)
        print(f"7-class val_accuracy {np.mean(predicted == val['labels']):.4f} "
              f"val_balanced_accuracy {balanced_accuracy_score(val['labels'], predicted):.4f}")
    return plain

if __name__ == "__main__":
    main()
