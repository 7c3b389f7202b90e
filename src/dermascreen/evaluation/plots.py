"""Curve data (also written for ``dvc plots``) and the figures of the final report.

Figures are built on ``matplotlib.figure.Figure`` rather than pyplot, so nothing global is
touched; the catalog's figure dataset saves and closes them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

CLASS_NAMES = ("benign", "malignant")


def roc_table(y_true: np.ndarray, p_malignant: np.ndarray) -> pd.DataFrame:
    """ROC curve points: ``fpr``, ``tpr``, ``threshold`` (sklearn's first threshold, inf, is dropped)."""
    fpr, tpr, thresholds = roc_curve(y_true, p_malignant)
    table = pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thresholds})
    return table[np.isfinite(table["threshold"])].reset_index(drop=True)


def pr_table(y_true: np.ndarray, p_malignant: np.ndarray) -> pd.DataFrame:
    """Precision-recall curve points: ``recall``, ``precision``, ``threshold`` (recall descending)."""
    precision, recall, thresholds = precision_recall_curve(y_true, p_malignant)
    # sklearn appends the (recall 0, precision 1) end point without a threshold.
    return pd.DataFrame({"recall": recall[:-1], "precision": precision[:-1], "threshold": thresholds})


def confusion_table(y_true: np.ndarray, p_malignant: np.ndarray, threshold: float) -> pd.DataFrame:
    """One row per sample, ``actual`` and ``predicted`` class names: DVC's confusion template layout."""
    predicted = (np.asarray(p_malignant) >= threshold).astype(int)
    names = np.asarray(CLASS_NAMES)
    return pd.DataFrame({"actual": names[np.asarray(y_true, dtype=int)], "predicted": names[predicted]})


def confusion_figure(metrics: dict, threshold: float) -> Figure:
    """2x2 counts with the row-normalised rate under each count."""
    counts = np.array([[metrics["tn"], metrics["fp"]], [metrics["fn"], metrics["tp"]]], dtype=float)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    fig = Figure(figsize=(4.2, 3.6))
    ax = fig.add_subplot()
    ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    for (row, col), count in np.ndenumerate(counts):
        colour = "white" if rates[row, col] > 0.5 else "black"
        ax.text(col, row, f"{int(count)}\n{rates[row, col]:.1%}", ha="center", va="center", color=colour)
    ax.set_xticks([0, 1], labels=[f"pred. {n}" for n in CLASS_NAMES])
    ax.set_yticks([0, 1], labels=[f"true {n}" for n in CLASS_NAMES])
    ax.set_title(f"Test confusion matrix (threshold {threshold:.3f})")
    return fig


def roc_figure(roc: pd.DataFrame, operating_point: dict, threshold: float) -> Figure:
    fig = Figure(figsize=(4.5, 4.2))
    ax = fig.add_subplot()
    ax.plot(roc["fpr"], roc["tpr"], label=f"model (AUC {operating_point['roc_auc']:.3f})")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    ax.plot(1.0 - operating_point["specificity"], operating_point["recall"], "o", color="crimson",
            label=f"threshold {threshold:.3f}")
    ax.set(xlabel="false positive rate (1 - specificity)", ylabel="recall (sensitivity)",
           xlim=(0, 1), ylim=(0, 1.01), title="Test ROC curve")
    ax.legend(loc="lower right")
    return fig


def pr_figure(pr: pd.DataFrame, operating_point: dict, threshold: float, prevalence: float) -> Figure:
    fig = Figure(figsize=(4.5, 4.2))
    ax = fig.add_subplot()
    ax.plot(pr["recall"], pr["precision"], label=f"model (AP {operating_point['pr_auc']:.3f})")
    ax.axhline(prevalence, linestyle=":", color="grey", label=f"prevalence {prevalence:.3f}")
    ax.plot(operating_point["recall"], operating_point["precision"], "o", color="crimson",
            label=f"threshold {threshold:.3f}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01), title="Test precision-recall curve")
    ax.legend(loc="upper right")
    return fig


def threshold_sweep_figure(sweep: pd.DataFrame, threshold: float, policy: str) -> Figure:
    """Validation recall, precision and specificity against the threshold, chosen one marked."""
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.add_subplot()
    for column in ("recall", "precision", "specificity"):
        ax.plot(sweep["threshold"], sweep[column], label=column)
    ax.axvline(threshold, color="crimson", linestyle="--", label=f"{policy}: {threshold:.3f}")
    ax.set(xlabel="threshold on p(malignant)", ylabel="validation value", xlim=(0, 1), ylim=(0, 1.01),
           title="Threshold sweep (validation)")
    ax.legend(loc="center right")
    return fig


def reliability_figure(curves: dict[str, pd.DataFrame]) -> Figure:
    """Observed malignant frequency against mean predicted probability per bin, one line per
    ``{label: bins}`` (e.g. before and after calibration); empty bins skipped."""
    fig = Figure(figsize=(4.5, 4.2))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect calibration")
    for label, bins in curves.items():
        filled = bins[bins["count"] > 0]
        ax.plot(filled["mean_predicted"], filled["observed_frequency"], "o-", label=label)
    ax.set(xlabel="mean predicted p(malignant)", ylabel="observed malignant frequency",
           xlim=(0, 1), ylim=(0, 1.01), title="Reliability (test)")
    ax.legend(loc="upper left", fontsize=8)
    return fig
