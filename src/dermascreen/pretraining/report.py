"""The pretraining comparison: test metrics as mean +- std over fine-tuning seeds, beside the seed
experiment's figures and the MedMNIST v2 benchmark."""

from __future__ import annotations

from typing import Any

import numpy as np

CLASS_NAMES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
SUMMARY_METRICS = ("accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1",
                   "weighted_precision", "weighted_recall", "weighted_f1", "auc")
# ../shared/seeds/mlo_mae_baselines_dermamnist.md, section 3.1 (test split, one run each; precision,
# recall and F1 are macro for ViT/MAE/U-MAE and weighted for SemMAE/AutoMAE/MLO-MAE there).
SEED_FIGURES = {"vit": 70.62, "mae": 74.11, "umae": 73.72, "semmae": 74.06, "automae": 73.87, "mlo_mae": 78.20}
# MedMNIST v2 (Yang et al. 2023), DermaMNIST, ResNet-18 at 28x28.
MEDMNIST_BENCHMARK = {"model": "ResNet-18 (28)", "accuracy": 0.735, "auc": 0.917}
LABELS = {"vit": "ViT (no pretraining)", "mae": "MAE", "umae": "U-MAE", "semmae": "SemMAE",
          "automae": "AutoMAE", "mlo_mae": "MLO-MAE"}


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-seed metric dicts -> ``{metric: {"mean", "std", "values"}}`` (std: sample, ddof=1)."""
    summary: dict[str, Any] = {"seeds": [r["seed"] for r in results]}
    for metric in SUMMARY_METRICS:
        values = np.array([r[metric] for r in results], dtype=float)
        summary[metric] = _stats(values)
    recalls = np.array([r["per_class_recall"] for r in results], dtype=float)  # (seeds, 7)
    summary["per_class_recall"] = {name: _stats(recalls[:, i]) for i, name in enumerate(CLASS_NAMES)}
    return summary


def _stats(values: np.ndarray) -> dict[str, Any]:
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(values.mean()), "std": std, "values": values.tolist()}


def _pm(stats: dict[str, Any]) -> str:
    return f"{100 * stats['mean']:.2f} ± {100 * stats['std']:.2f}"


def render_report(summaries: dict[str, dict[str, Any]], provenance: dict[str, Any], run_info: dict[str, Any]) -> str:
    """Markdown: provenance, the main table (test, mean ± std in %), per-class recall, references."""
    methods = list(summaries)
    official = "official" if provenance.get("official") else "NOT the official file"
    lines = [
        "# Pretraining comparison on DermaMNIST (7 classes, test split)",
        "",
        f"Produced by `{run_info['command']}` (profile `{run_info['profile']}`) on "
        f"`{provenance.get('path')}` (md5 `{provenance.get('md5')}`, {official}).",
        f"Fine-tuning: {run_info['finetune']}. Seeds: {run_info['seeds']}. Pretraining: {run_info['pretraining']}.",
        f"Hardware: {run_info['hardware']}.",
        "Model and epoch selection used the validation split only; the test split was read once, "
        "by this report. Values are mean ± std (sample) over fine-tuning seeds, in %.",
        "",
        "| Metric | " + " | ".join(LABELS[m] for m in methods) + " |",
        "| --- |" + " --- |" * len(methods),
    ]
    for metric in SUMMARY_METRICS:
        lines.append(f"| {metric} | " + " | ".join(_pm(summaries[m][metric]) for m in methods) + " |")
    lines.append("| seed experiment's accuracy (one run, best *test* epoch for MLO-MAE) | "
                 + " | ".join(f"{SEED_FIGURES[m]:.2f}" for m in methods) + " |")
    lines += ["", f"MedMNIST v2 benchmark, {MEDMNIST_BENCHMARK['model']}: accuracy "
              f"{100 * MEDMNIST_BENCHMARK['accuracy']:.1f}%, AUC {MEDMNIST_BENCHMARK['auc']:.3f}.", "",
              "## Per-class recall on test (%)", "",
              "| Class | " + " | ".join(LABELS[m] for m in methods) + " |", "| --- |" + " --- |" * len(methods)]
    for name in CLASS_NAMES:
        lines.append(f"| {name} | " + " | ".join(_pm(summaries[m]["per_class_recall"][name]) for m in methods)
                     + " |")
    lines += ["", "The seed experiment's precision/recall/F1 mixed macro (ViT, MAE, U-MAE) and weighted "
              "(SemMAE, AutoMAE, MLO-MAE) averages; both are given here for every method.", ""]
    return "\n".join(lines)


def metrics_for_dvc(summaries: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Flat ``{method: {metric_mean, metric_std}}`` for ``dvc metrics``."""
    return {method: {f"{metric}_{stat}": summary[metric][stat] for metric in SUMMARY_METRICS
                     for stat in ("mean", "std")} for method, summary in summaries.items()}
