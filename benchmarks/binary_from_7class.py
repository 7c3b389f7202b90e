"""Binary ROC AUC of the pretraining stage's 7-class runs, alone and averaged, measured on validation.

Needs a finished pretraining pipeline (``data/06_models/pretraining/<method>/finetuned.pt`` and
``data/05_model_input/val.npz``). Each stored fine-tuning (every seed of the ViT rows and of the
CNN reference) scores a lesion by its summed malignant-class probabilities, as the binary model
does; the script prints each run's validation ROC AUC, each method's mean over its seeds, and the
means of the CNN reference with the MAE-family runs: what averaging the run's other models would
buy the binary task. Reads the first pretraining seed's fine-tunings only. Never reads test.

    PYTHONPATH=src .venv/bin/python benchmarks/binary_from_7class.py [--threads 2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from dermascreen.data.labels import malignant_lookup
from dermascreen.datasets.npz_dataset import NpzDataset
from dermascreen.datasets.torch_dataset import TorchDataset
from dermascreen.pretraining.finetune import run_probabilities
from dermascreen.pretraining.methods import METHODS as MAE_FAMILY

ROOT = Path(__file__).resolve().parents[1]
ROWS = ("vit", *MAE_FAMILY, "cnn")  # the pretraining report's rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    val = NpzDataset(str(ROOT / "data" / "05_model_input" / "val.npz")).load()
    malignant = malignant_lookup().astype(bool)
    y = malignant_lookup()[np.asarray(val["labels"]).ravel()]
    scores = {}
    for method in ROWS:
        runs = TorchDataset(str(ROOT / "data" / "06_models" / "pretraining" / method / "finetuned.pt")).load()
        probabilities = run_probabilities(runs, {"images": val["images"]}, runs[0]["normalization"], "cpu")
        scores[method] = [p[:, malignant].sum(axis=1) for p in probabilities]  # [seed] -> (N,)
        per_seed = " ".join(f"{roc_auc_score(y, s):.4f}" for s in scores[method])
        print(f"{method:8s} seeds {per_seed}   mean of seeds {roc_auc_score(y, np.mean(scores[method], axis=0)):.4f}")
    family = np.concatenate([scores[method] for method in MAE_FAMILY])
    cnn = np.mean(scores["cnn"], axis=0)
    print(f"MAE-family runs averaged {roc_auc_score(y, family.mean(axis=0)):.4f}; "
          f"with the CNN reference (half each) {roc_auc_score(y, (cnn + family.mean(axis=0)) / 2):.4f}")


if __name__ == "__main__":
    main()
