"""The pretraining comparison: test metrics as mean +- std over a method's runs (pretraining seeds x
fine-tuning seeds), paired differences against the ViT without pretraining, frozen-encoder probes on
validation (mean +- std over pretraining seeds), and the references (the supervised CNN trained here,
the seed experiment's figures, the MedMNIST v2 benchmark)."""

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
          "automae": "AutoMAE", "mlo_mae": "MLO-MAE", "cnn": "CNN reference (supervised)"}
PROBE_LABELS = {"knn_accuracy": "k-NN accuracy", "knn_balanced_accuracy": "k-NN balanced accuracy",
                "linear_accuracy": "linear-probe accuracy", "linear_balanced_accuracy": "linear-probe balanced accuracy"}
# How the design note's figures were obtained (../shared/seeds/mlo_mae_baselines_dermamnist.md).
SEED_CAVEAT = (
    "The seed experiment's figures are not comparable with this table: they come from a ViT-B with "
    "patch size 2 pretrained on train + validation, one run per method, and MLO-MAE's 78.20 is the "
    "best epoch chosen on the *test* split (its last epoch: 75.9). Here every choice is made on "
    "validation, the test split is read once, and each figure is a mean over seeds.")


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-run metric dicts -> ``{metric: {"mean", "std", "values"}}`` (std: sample, ddof=1), with each
    run's fine-tuning seed (``seeds``) and pretraining seed (``pretrain_seeds``, None without pretraining)."""
    summary: dict[str, Any] = {"seeds": [r["seed"] for r in results],
                               "pretrain_seeds": [r.get("pretrain_seed") for r in results]}
    for metric in SUMMARY_METRICS:
        values = np.array([r[metric] for r in results], dtype=float)
        summary[metric] = _stats(values)
    recalls = np.array([r["per_class_recall"] for r in results], dtype=float)  # (seeds, 7)
    summary["per_class_recall"] = {name: _stats(recalls[:, i]) for i, name in enumerate(CLASS_NAMES)}
    return summary


def summarise_probes(scores: dict[int, dict[str, float]]) -> dict[str, Any]:
    """``{pretraining seed: probe scores}`` -> ``{score: {"mean", "std", "values"}}`` over the seeds."""
    return {"pretrain_seeds": list(scores),
            **{key: _stats(np.array([seed_scores[key] for seed_scores in scores.values()], dtype=float))
               for key in PROBE_LABELS}}


def _stats(values: np.ndarray) -> dict[str, Any]:
    """Mean and sample std (None for one value: one seed has no spread, not a spread of 0)."""
    std = float(values.std(ddof=1)) if len(values) > 1 else None
    return {"mean": float(values.mean()), "std": std, "values": values.tolist()}


def _pm(stats: dict[str, Any]) -> str:
    if stats["std"] is None:
        return f"{100 * stats['mean']:.2f} (one seed)"
    return f"{100 * stats['mean']:.2f} ± {100 * stats['std']:.2f}"


def _runs(summary: dict[str, Any]) -> str:
    """How many runs a column averages: pretraining seeds x fine-tuning seeds, or fine-tuning seeds."""
    finetuning = len(set(summary["seeds"]))
    pretraining = {seed for seed in summary["pretrain_seeds"] if seed is not None}
    return f"{len(pretraining)} x {finetuning}" if pretraining else str(finetuning)


def render_report(summaries: dict[str, dict[str, Any]], provenance: dict[str, Any], run_info: dict[str, Any],
                  differences: dict[str, dict[str, Any]], probes: dict[str, dict[str, Any]],
                  compute: dict[str, dict[str, float]]) -> str:
    """Markdown: provenance, the main table (test, mean ± std in %), the paired differences with the
    ViT, the probes, per-class recall, the compute each method used and the references."""
    methods = list(summaries)
    official = "official" if provenance.get("official") else "NOT the official file"
    lines = [
        "# Pretraining comparison on DermaMNIST (7 classes, test split)",
        "",
        f"Produced by `{run_info['command']}` (profile `{run_info['profile']}`) on "
        f"`{provenance.get('path')}` (md5 `{provenance.get('md5')}`, {official}).",
        f"Fine-tuning (every ViT): {run_info['finetune']}, {run_info['class_weights']}. "
        f"CNN reference: {run_info['cnn']}. "
        f"Fine-tuning seeds: {run_info['seeds']}; pretraining seeds: {run_info['pretrain_seeds']} (one encoder "
        f"per method and pretraining seed, each fine-tuned with every fine-tuning seed). "
        f"Pretraining: {run_info['pretraining']}.",
        f"Hardware: {run_info['hardware']}.",
        "Model and epoch selection used the validation split only (each run keeps its epoch of best "
        "validation balanced accuracy: accuracy alone rewards answering nv, 66.9% of the images); the "
        "test split was read once, by this report. Values are mean ± std (sample) over a method's runs "
        "(every pretraining seed x every fine-tuning seed; the first row gives how many), in %.",
        "",
        "| Metric | " + " | ".join(LABELS[m] for m in methods) + " |",
        "| --- |" + " --- |" * len(methods),
        "| runs (pretraining x fine-tuning seeds) | " + " | ".join(_runs(summaries[m]) for m in methods) + " |",
    ]
    for metric in SUMMARY_METRICS:
        lines.append(f"| {metric} | " + " | ".join(_pm(summaries[m][metric]) for m in methods) + " |")
    lines.append("| seed experiment's accuracy (one run, see below) | "
                 + " | ".join(f"{SEED_FIGURES[m]:.2f}" if m in SEED_FIGURES else "" for m in methods) + " |")
    lines += ["", f"MedMNIST v2 benchmark, {MEDMNIST_BENCHMARK['model']}: accuracy "
              f"{100 * MEDMNIST_BENCHMARK['accuracy']:.1f}%, AUC {MEDMNIST_BENCHMARK['auc']:.3f}. "
              "Always answering nv: accuracy 66.9%, balanced accuracy 14.3%.", "", SEED_CAVEAT, "",
              "## Against the ViT without pretraining (test, paired)", "",
              "Difference in percentage points (method minus ViT, each the mean over all its runs: the "
              "difference of the table's means) with a 95% paired bootstrap interval (1000 resamples of the "
              "test images, stratified by class, every run kept); an interval that contains 0 is no evidence "
              "of a difference. The interval measures the test sample's variation; the spread over seeds is "
              "the table's std.", "",
              "| Method | accuracy difference | balanced accuracy difference |", "| --- | --- | --- |"]
    for method, diff in differences.items():
        lines.append(f"| {LABELS[method]} | {_ci(diff['accuracy'])} | {_ci(diff['balanced_accuracy'])} |")
    lines += ["", "## Frozen encoders on validation (no fine-tuning)", "",
              "k-NN (20 neighbours, cosine) and a linear probe (logistic regression on standardised "
              "features) on the mean-pooled patch tokens, fitted on train, scored on validation, in %, mean "
              "± std over pretraining seeds (one encoder each). Epoch 0 is the seeded initialisation every "
              "method of a pretraining seed starts from; a method that does not beat it has not learnt a "
              "representation.", "",
              "| Encoder | " + " | ".join(PROBE_LABELS.values()) + " |", "| --- |" + " --- |" * len(PROBE_LABELS)]
    for method, scores in probes.items():
        name = "epoch 0 (untrained)" if method == "vit" else LABELS[method]
        lines.append(f"| {name} | " + " | ".join(_pm(scores[k]) for k in PROBE_LABELS) + " |")
    lines += ["", "## Per-class recall on test (%)", "",
              "| Class | " + " | ".join(LABELS[m] for m in methods) + " |", "| --- |" + " --- |" * len(methods)]
    for name in CLASS_NAMES:
        lines.append(f"| {name} | " + " | ".join(_pm(summaries[m]["per_class_recall"][name]) for m in methods)
                     + " |")
    lines += ["", "## Compute", "",
              "Wall-clock seconds on this run's hardware, summed over a method's pretraining seeds and runs, "
              "and a pretraining step's encoder tokens (every ViT encoder pass, frozen ones included) "
              "relative to MAE's. SemMAE and AutoMAE also need the MAE runs (of the same pretraining seeds) "
              "whose encoders guide their masks: their total is theirs plus MAE's.", "",
              "| Method | pretraining, all seeds (s) | encoder tokens per step (x MAE) | fine-tuning, all runs (s) |",
              "| --- | --- | --- | --- |"]
    mae_tokens = (compute.get("mae") or {}).get("encoder_tokens_per_step")
    for method in methods:
        spent = compute[method]
        if spent.get("pretraining_s") is None:
            pretraining, tokens = "none", "none"
        else:
            pretraining = f"{spent['pretraining_s']:.0f}"
            tokens = f"{spent['encoder_tokens_per_step'] / mae_tokens:.2f}" if mae_tokens else "-"
        lines.append(f"| {LABELS[method]} | {pretraining} | {tokens} | {spent['finetuning_s']:.0f} |")
    lines += ["", "The seed experiment's precision/recall/F1 mixed macro (ViT, MAE, U-MAE) and weighted "
              "(SemMAE, AutoMAE, MLO-MAE) averages; both are given here for every method.", ""]
    return "\n".join(lines)


def _ci(interval: dict[str, float]) -> str:
    return f"{100 * interval['estimate']:+.2f} [{100 * interval['low']:+.2f}, {100 * interval['high']:+.2f}]"


def metrics_for_dvc(summaries: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Flat ``{method: {metric_mean, metric_std}}`` for ``dvc metrics`` (no std of one seed)."""
    return {method: {f"{metric}_{stat}": summary[metric][stat] for metric in SUMMARY_METRICS
                     for stat in ("mean", "std") if summary[metric][stat] is not None}
            for method, summary in summaries.items()}
