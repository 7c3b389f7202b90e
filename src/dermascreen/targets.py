"""``python -m dermascreen.targets``: the `quick` profile's targets, the measured values, the anchors.

Reads the committed metrics files (``data/08_reporting/phase3_metrics.json``,
``pretraining_metrics.json``); prints one row per target. Informational: it never fails a run, and
it never chooses anything (the figures are test-split results of models chosen on validation).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPORTING = Path("data/08_reporting")
MAE_FAMILY = ("mae", "umae", "semmae", "automae", "mlo_mae")
# The goals of issue 15 (accuracies as fractions); benchmarks/quality_curve.py draws them too.
GOALS = {"binary_roc_auc": 0.91, "recall": 0.90, "specificity": 0.72, "mae_family_accuracy": 0.74,
         "mae_family_balanced_accuracy": 0.45, "cnn_accuracy": 0.78}


@dataclass(frozen=True)
class Target:
    name: str
    goal: str
    anchor: str
    measure: Callable[[dict, dict], tuple[str, bool] | None]  # (value, met) or None when not measured


def _binary_auc(phase3: dict, _: dict):
    if "test_roc_auc" not in phase3:
        return None
    return f"{phase3['test_roc_auc']:.3f}", phase3["test_roc_auc"] >= GOALS["binary_roc_auc"]


def _operating_point(phase3: dict, _: dict):
    if "test_recall" not in phase3:
        return None
    recall, specificity = phase3["test_recall"], phase3["test_specificity"]
    met = recall >= GOALS["recall"] and specificity >= GOALS["specificity"]
    return f"recall {recall:.3f}, specificity {specificity:.3f}", met


def _best_mae_family(pretraining: dict, key: str, goal: float):
    rows = {m: pretraining[m] for m in MAE_FAMILY if m in pretraining}
    if not rows:
        return None
    method = max(rows, key=lambda m: rows[m][f"{key}_mean"])
    value = rows[method][f"{key}_mean"]
    return f"{value:.3f} ({method}, mean of seeds)", value >= goal


def _supervised_reference(_: dict, pretraining: dict):
    row = pretraining.get("cnn")
    if row is None:
        return None
    return f"{row['accuracy_mean']:.3f}", row["accuracy_mean"] >= GOALS["cnn_accuracy"]


TARGETS = (
    Target("binary test ROC AUC", f">= {GOALS['binary_roc_auc']:.2f}",
           "0.877 (design note's Keras pipeline, GPU)", _binary_auc),
    Target("binary test operating point",
           f"recall >= {GOALS['recall']:.2f} at specificity >= {GOALS['specificity']:.2f}",
           "recall 0.916 at specificity 0.636 (Keras pipeline)", _operating_point),
    Target("7-class accuracy, best MAE-family method", f">= {GOALS['mae_family_accuracy']:.2f}",
           "MAE 0.741, ViT 0.706 (MAE note, GPU); ResNet-18 0.735 (MedMNIST v2); always nv 0.669",
           lambda _, p: _best_mae_family(p, "accuracy", GOALS["mae_family_accuracy"])),
    Target("7-class balanced accuracy, best MAE-family method",
           f">= {GOALS['mae_family_balanced_accuracy']:.2f}", "always nv 0.143",
           lambda _, p: _best_mae_family(p, "balanced_accuracy", GOALS["mae_family_balanced_accuracy"])),
    Target("7-class accuracy, supervised CNN reference", f">= {GOALS['cnn_accuracy']:.2f}",
           "ResNet-18 0.735 (MedMNIST v2)", _supervised_reference),
)


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def summary(reporting: Path = REPORTING, wall_minutes: float | None = None) -> str:
    """The targets table as Markdown."""
    phase3 = _read(reporting / "phase3_metrics.json")
    pretraining = _read(reporting / "pretraining_metrics.json")
    lines = ["| target | goal | measured | met | anchor |", "| --- | --- | --- | --- | --- |"]
    if wall_minutes is not None:
        lines.append(f"| wall time of the run (set-up excluded) | <= 45 min (quick, 2 CPU cores) | "
                     f"{wall_minutes:.1f} min | {'yes' if wall_minutes <= 45 else 'no'} | - |")
    for target in TARGETS:
        measured = target.measure(phase3, pretraining)
        value, met = measured if measured is not None else ("not measured", None)
        lines.append(f"| {target.name} | {target.goal} | {value} | "
                     f"{'-' if met is None else 'yes' if met else 'no'} | {target.anchor} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reporting", type=Path, default=REPORTING)
    parser.add_argument("--wall-minutes", type=float, default=None,
                        help="the run's wall time after set-up (data check, preflight, weights, grid, estimate, "
                             "dvc repro), to report it")
    args = parser.parse_args()
    print(summary(args.reporting, args.wall_minutes))


if __name__ == "__main__":
    main()
