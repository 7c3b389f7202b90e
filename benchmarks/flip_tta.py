"""Test-time flips for the 7-class fine-tunings, measured on validation.

Needs a finished pretraining pipeline (``data/06_models/pretraining/<method>/finetuned.pt`` and
``data/05_model_input/val.npz``). For every stored fine-tuned run it predicts the validation images
as they are, the mean over identity + horizontal + vertical flips, and the mean over those and the
flip of both axes (the orientations a dermoscopic image may have), then prints each method's
accuracy and balanced accuracy (mean of its fine-tuning seeds) per variant. Never reads test.

    PYTHONPATH=src .venv/bin/python benchmarks/flip_tta.py [--methods vit mae cnn] [--threads 2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from dermascreen.datasets.npz_dataset import NpzDataset
from dermascreen.datasets.torch_dataset import TorchDataset
from dermascreen.models.factory import build_model
from dermascreen.training import predict_proba

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("vit", "mae", "umae", "semmae", "automae", "mlo_mae", "cnn")


def orientations(images: np.ndarray) -> list[np.ndarray]:
    """(N, H, W, 3) as they are, flipped horizontally, vertically, and both."""
    return [images, images[:, :, ::-1], images[:, ::-1, :], images[:, ::-1, ::-1]]


def variant_scores(run: dict, images: np.ndarray, labels: np.ndarray) -> list[float]:
    """Accuracy and balanced accuracy (%) of one run: plain, 3 orientations, 4 orientations."""
    model = build_model(run["config"])
    model.load_state_dict(run["state_dict"])
    probabilities = [predict_proba(model, np.ascontiguousarray(view), run["normalization"], device="cpu")
                     for view in orientations(images)]
    scores = []
    for proba in (probabilities[0], np.mean(probabilities[:3], axis=0), np.mean(probabilities, axis=0)):
        predicted = proba.argmax(axis=1)
        scores += [100 * accuracy_score(labels, predicted), 100 * balanced_accuracy_score(labels, predicted)]
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    val = NpzDataset(str(ROOT / "data" / "05_model_input" / "val.npz")).load()
    labels = np.asarray(val["labels"]).ravel()
    print("method    plain acc / bal    + h, v flips    + hv flip   (validation, mean of the seeds)")
    for method in args.methods:
        runs = TorchDataset(str(ROOT / "data" / "06_models" / "pretraining" / method / "finetuned.pt")).load()
        mean = np.mean([variant_scores(run, val["images"], labels) for run in runs], axis=0)
        print(f"{method:8s}  {mean[0]:6.2f} / {mean[1]:5.2f}   {mean[2]:6.2f} / {mean[3]:5.2f}   "
              f"{mean[4]:6.2f} / {mean[5]:5.2f}")


if __name__ == "__main__":
    main()
