"""Which selection criterion picks models that hold up: recall at 0.5 (with the specificity guard)
or the best specificity at recall >= 0.90 (``spec_at_recall``)? Validation data only.

Step ``train``: the quick phase1 grid's runs (CNN_v1 x W0/W3/W5, quick training settings) trained
for the quick profile's epochs without early stopping, the validation probabilities of every
epoch saved (``--out`` npz). Step ``analyse``: for each of ``--splits`` random stratified halves
(A, B) of validation, each criterion picks a (run, epoch) on A, as the grid leaderboard and the
best-epoch tracking together do, and the pick is measured on B: ROC AUC, and the specificity and
recall on B at the threshold that reaches recall 0.90 on A (phase3's procedure). Writes JSON.

    .venv/bin/python benchmarks/selection_evidence.py train --out benchmarks/results/selection_val_scores.npz
    .venv/bin/python benchmarks/selection_evidence.py analyse --scores benchmarks/results/selection_val_scores.npz

The test split is never read.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from ignite.engine import Events

from dermascreen.data.labels import class_weights, to_binary
from dermascreen.evaluation.metrics import binary_metrics
from dermascreen.io import atomic_write
from dermascreen.models import build_model
from dermascreen.training.augment import BatchAugment
from dermascreen.training.data import train_batches
from dermascreen.training.device import resolve_precision
from dermascreen.training.engines import create_trainer, guarded_score
from dermascreen.training.fit import predict_proba

ROOT = Path(__file__).resolve().parents[1]
CRITERIA = ("recall", "spec_at_recall")


def load_splits(path: str) -> dict[str, dict]:
    arrays = np.load(path)
    splits = {}
    for split in ("train", "val"):
        labels = arrays[f"{split}_labels"].reshape(-1).astype(np.int64)
        splits[split] = {"images": np.ascontiguousarray(arrays[f"{split}_images"], dtype=np.uint8),
                         "labels": labels, "binary": to_binary(labels)}
    return splits


def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    base = yaml.safe_load((ROOT / "conf/base/globals.yml").read_text())["binary_training"]
    quick = yaml.safe_load((ROOT / "conf/quick/globals.yml").read_text())["binary_training"]
    phase1 = yaml.safe_load((ROOT / "conf/base/parameters_phase1.yml").read_text())["phase1"]
    arch = phase1["architectures"]["CNN_v1"]
    strategies = yaml.safe_load((ROOT / "conf/base/parameters_data_engineering.yml").read_text())[
        "data_engineering"]["class_weight_strategies"]
    splits = load_splits(args.npz)
    pixels = splits["train"]["images"].reshape(-1, 3).astype(np.float64) / 255.0
    normalization = {"mean": pixels.mean(axis=0).tolist(), "std": pixels.std(axis=0).tolist()}
    weights = class_weights(splits["train"]["binary"], strategies)
    device = torch.device("cpu")
    precision = resolve_precision(device, quick["precision"])  # as the quick profile trains
    channels_last = precision == "bf16"
    scores = {}
    for name in ("W0", "W3", "W5"):
        torch.manual_seed(base["seed"])
        model = build_model({**arch["model"], "num_classes": 2})
        model.to(memory_format=torch.channels_last if channels_last else torch.preserve_format)
        optimizer = torch.optim.Adam(model.parameters(), lr=arch["lr"])
        loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights[name], dtype=torch.float32))
        batches = train_batches(splits["train"], "binary", arch["batch_size"], device, base["seed"])
        trainer = create_trainer(model, optimizer, loss_fn, device, normalization,
                                 BatchAugment.from_config(base["augment"]), precision, channels_last)
        per_epoch = []
        trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: batches.set_epoch(e.state.epoch - 1))

        @trainer.on(Events.EPOCH_COMPLETED)
        def record(engine, per_epoch=per_epoch, model=model, name=name):
            per_epoch.append(predict_proba(model, splits["val"]["images"], normalization, device="cpu")[:, 1])
            print(f"{name} epoch {engine.state.epoch}: {time.strftime('%H:%M:%S')}", flush=True)

        trainer.run(batches, max_epochs=quick["epochs"])
        scores[name] = np.stack(per_epoch)  # (epochs, N_val)
    np.savez_compressed(args.out, y_val=splits["val"]["binary"], labels_val=splits["val"]["labels"], **scores)
    print(f"wrote {args.out}")


def pick(scores: dict, y: np.ndarray, rows: np.ndarray, criterion: str, min_specificity: float,
         target: float) -> tuple[str, int] | None:
    """(run, epoch index) maximising (guarded criterion, ROC AUC) on ``rows``; None if none passes."""
    best, best_key = None, None
    for run, per_epoch in scores.items():
        for epoch, p in enumerate(per_epoch):
            metrics = binary_metrics(y[rows], p[rows], target_recall=target)
            key = (guarded_score(metrics, criterion, "max", min_specificity), metrics["roc_auc"])
            if key[0] > -np.inf and (best_key is None or key > best_key):
                best, best_key = (run, epoch), key
    return best


def target_recall_threshold(y: np.ndarray, p: np.ndarray, target: float) -> float:
    """phase3's ``target_recall`` policy (the highest threshold whose recall reaches ``target``), directly:
    the k-th highest malignant score, k = ceil(target x malignant count)."""
    positives = np.sort(p[y == 1])[::-1]
    return float(positives[int(np.ceil(target * len(positives) - 1e-9)) - 1])


def analyse(args: argparse.Namespace) -> None:
    data = np.load(args.scores)
    y = data["y_val"]
    scores = {run: data[run] for run in ("W0", "W3", "W5")}
    rng = np.random.default_rng(args.seed)
    results = {c: {"auc_B": [], "spec_at_recall_B": [], "spec_B": [], "recall_B": [], "picks": []} for c in CRITERIA}
    per_run = {c: {"auc_B": [], "spec_at_recall_B": [], "spec_B": [], "recall_B": []} for c in CRITERIA}  # epoch pick within each run
    for _ in range(args.splits):
        a = np.concatenate([rng.permutation(np.flatnonzero(y == k))[: int(np.sum(y == k)) // 2] for k in (0, 1)])
        b = np.setdiff1d(np.arange(len(y)), a)
        for criterion in CRITERIA:
            for subset, target in ((scores, results[criterion]),
                                   *(({run: s}, None) for run, s in scores.items())):
                chosen = pick(subset, y, a, criterion, args.min_specificity, args.target_recall)
                if chosen is None:
                    continue
                p = subset[chosen[0]][chosen[1]]
                threshold = target_recall_threshold(y[a], p[a], args.target_recall)
                on_b = binary_metrics(y[b], p[b], threshold, target_recall=args.target_recall)
                out = target if target is not None else per_run[criterion]
                out["auc_B"].append(on_b["roc_auc"])
                out["spec_at_recall_B"].append(on_b["spec_at_recall"])
                out["spec_B"].append(on_b["specificity"])
                out["recall_B"].append(on_b["recall"])
                if target is not None:
                    out["picks"].append(f"{chosen[0]}@{chosen[1] + 1}")
    summary = {"splits": args.splits, "seed": args.seed, "target_recall": args.target_recall,
               "min_specificity": args.min_specificity, "epochs": int(next(iter(scores.values())).shape[0])}
    for criterion in CRITERIA:
        grid, runs = results[criterion], per_run[criterion]
        picks, counts = np.unique(grid["picks"], return_counts=True)
        summary[criterion] = {
            "grid": {k: {"mean": float(np.mean(v)), "std": float(np.std(v))}
                     for k, v in grid.items() if k != "picks"},
            "grid_picks": {p: int(c) for p, c in sorted(zip(picks, counts), key=lambda t: -t[1])[:5]},
            "epoch_within_run": {k: {"mean": float(np.mean(v)), "std": float(np.std(v))} for k, v in runs.items()},
        }
    for key in ("auc_B", "spec_at_recall_B", "spec_B", "recall_B"):  # paired over the same splits
        diff = np.asarray(results["spec_at_recall"][key]) - np.asarray(results["recall"][key])
        summary[f"{key}_difference_spec_at_recall_minus_recall"] = {
            "mean": float(diff.mean()), "share_positive": float(np.mean(diff > 0)),
            "share_negative": float(np.mean(diff < 0))}
    with atomic_write(args.out, suffix=".json") as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2) + "\n")
    for criterion in CRITERIA:
        grid = summary[criterion]["grid"]
        print(f"{criterion:>15}: " + ", ".join(f"{k} {v['mean']:.4f} +- {v['std']:.4f}" for k, v in grid.items()))
    for key in ("auc_B", "spec_at_recall_B", "spec_B", "recall_B"):
        d = summary[f"{key}_difference_spec_at_recall_minus_recall"]
        print(f"{key} difference {d['mean']:+.4f} (positive in {d['share_positive']:.1%}, negative in {d['share_negative']:.1%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    t = sub.add_parser("train")
    t.add_argument("--npz", default=os.environ.get("DERMAMNIST_NPZ", str(ROOT.parent / "shared/data/dermamnist_28_jpeg75.npz")))
    t.add_argument("--out", default=str(ROOT / "benchmarks/results/selection_val_scores.npz"))
    t.add_argument("--threads", type=int, default=1)
    a = sub.add_parser("analyse")
    a.add_argument("--scores", default=str(ROOT / "benchmarks/results/selection_val_scores.npz"))
    a.add_argument("--out", default=str(ROOT / "benchmarks/results/selection_evidence.json"))
    a.add_argument("--splits", type=int, default=200)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--target-recall", type=float, default=0.90)
    a.add_argument("--min-specificity", type=float, default=0.5)
    args = parser.parse_args()
    train(args) if args.step == "train" else analyse(args)


if __name__ == "__main__":
    main()
