"""Test-time flips for the 7-class fine-tunings, measured on validation.

Needs a finished pretraining pipeline (``data/06_models/pretraining/<method>/finetuned.pt`` and
``data/05_model_input/val.npz``). For every stored fine-tuned run it predicts the validation images
as they are, the mean over identity + horizontal + vertical flips, and the mean over those and the
flip of both axes (the orientations a dermoscopic image may have), then prints each method's
accuracy and balanced accuracy (mean of its fine-tuning seeds) per variant. Reads the first
pretraining seed's fine-tunings only (``<method>/finetuned.pt``; with several pretraining seeds, as
in ``base``, the report also pools ``<method>_seed<k>``). Never reads test.

    PYTHONPATH=src .venv/bin/python benchmarks/flip_tta.py [--methods vit mae cnn] [--threads 2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from dermascreen.datasets.npz_dataset import NpzDataset
from dermascreen.datasets.torch_dataset import TorchDataset
from dermascreen.evaluation.metrics import multiclass_metrics
from dermascreen.pretraining.finetune import run_probabilities
from dermascreen.pretraining.methods import METHODS as MAE_FAMILY

ROOT = Path(__file__).resolve().parents[1]
MODEL_INPUT = ROOT / "data" / "05_model_input"
ROWS = ("vit", *MAE_FAMILY, "cnn")  # the pretraining report's rows


def orientations(images: np.ndarray) -> list[np.ndarray]:
    """(N, H, W, 3) as they are, flipped horizontally, vertically, and both."""
    return [images, images[:, :, ::-1], images[:, ::-1, :], images[:, ::-1, ::-1]]


def variant_scores(runs: list[dict], images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Accuracy and balanced accuracy (%) per run (rows): plain, 3 orientations, 4 orientations."""
    per_view = [run_probabilities(runs, {"images": np.ascontiguousarray(view)}, runs[0]["normalization"], "cpu")
                for view in orientations(images)]  # [view][run] -> (N, 7)
    scores = []
    for run in range(len(runs)):
        views = [probabilities[run] for probabilities in per_view]
        row = []
        for proba in (views[0], np.mean(views[:3], axis=0), np.mean(views, axis=0)):
            metrics = multiclass_metrics(labels, proba)
            row += [100 * metrics["accuracy"], 100 * metrics["balanced_accuracy"]]
        scores.append(row)
    return np.array(scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", choices=ROWS, default=list(ROWS))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    val = NpzDataset(str(MODEL_INPUT / "val.npz")).load()
    labels = np.asarray(val["labels"]).ravel()
    print("method    plain acc / bal    + h, v flips    + hv flip   (validation, mean of the seeds)")
    for method in args.methods:
        runs = TorchDataset(str(ROOT / "data" / "06_models" / "pretraining" / method / "finetuned.pt")).load()
        mean = variant_scores(runs, val["images"], labels).mean(axis=0)
        print(f"{method:8s}  {mean[0]:6.2f} / {mean[1]:5.2f}   {mean[2]:6.2f} / {mean[3]:5.2f}   "
              f"{mean[4]:6.2f} / {mean[5]:5.2f}")


if __name__ == "__main__":
    main()
