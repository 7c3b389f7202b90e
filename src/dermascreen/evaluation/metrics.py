"""Every classification metric of the project, in numpy: one implementation for engines and reports.

Conventions (checked against scikit-learn in ``tests/evaluation/test_metrics.py``):

- A ratio whose denominator is zero is 0, never NaN (scikit-learn's ``zero_division=0``): a model
  that predicts no malignant lesion has precision 0.
- ROC AUC is NaN only when one class is absent from ``y_true`` (it is undefined there); average
  precision (``pr_auc``) is NaN only when there is no positive sample.
- Ties in scores are handled exactly as scikit-learn does (average ranks for ROC AUC, one step per
  distinct score for average precision).
- ``spec_at_recall`` (the best specificity at recall >= ``target_recall``, over every threshold) is
  NaN when one class is absent, like ROC AUC: it reads the ROC curve, not the 0.5 decision.
"""

from __future__ import annotations

import numpy as np


TARGET_RECALL = 0.90  # phase3's operating recall, the default target of ``spec_at_recall``


def binary_metrics(y_true, p_malignant, threshold: float = 0.5, target_recall: float = TARGET_RECALL) -> dict:
    """Metrics of a malignant-vs-benign classifier; a sample is called malignant when p >= threshold.

    Returns accuracy, precision, recall (sensitivity), specificity, f1, f2, roc_auc, pr_auc
    (average precision), spec_at_recall (threshold-free: ``specificity_at_recall`` at
    ``target_recall``) and the confusion counts tn, fp, fn, tp, as Python numbers.
    """
    y_true = _labels(y_true, "y_true")
    scores = _scores(p_malignant, len(y_true))
    if not set(np.unique(y_true)) <= {0, 1}:
        raise ValueError(f"y_true: binary labels must be 0 or 1, got values {np.unique(y_true).tolist()}")
    y_pred = (scores >= threshold).astype(np.int64)
    tp = int(np.sum((y_pred == 1) & (y_true == 1)))
    tn = int(np.sum((y_pred == 0) & (y_true == 0)))
    fp = int(np.sum((y_pred == 1) & (y_true == 0)))
    fn = int(np.sum((y_pred == 0) & (y_true == 1)))
    return {
        "accuracy": (tp + tn) / len(y_true),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "f1": _f_beta(tp, fp, fn, beta=1.0),
        "f2": _f_beta(tp, fp, fn, beta=2.0),
        "roc_auc": roc_auc(y_true, scores),
        "pr_auc": average_precision(y_true, scores),
        "spec_at_recall": specificity_at_recall(y_true, scores, target_recall),
        "tn": tn,
        "fp": fp,
        "fn": fn,
        "tp": tp,
    }


def operating_specificity(metrics: dict, monitor: str) -> float:
    """The specificity the selection guard checks: where the monitored metric puts the threshold.

    For ``spec_at_recall`` that is the threshold reaching the recall target (where phase3 will use
    the model); for every other metric it is the 0.5 threshold of ``specificity``.
    """
    return metrics["spec_at_recall"] if monitor == "spec_at_recall" else metrics["specificity"]


def multiclass_metrics(y_true, proba) -> dict:
    """Metrics of a K-class classifier from its class probabilities ``proba`` (N, K); prediction = argmax.

    Macro averages run over all K classes (a class never seen nor predicted scores 0), weighted
    averages weight each class by its support. ``auc`` is the mean one-vs-rest ROC AUC over the
    classes present in ``y_true`` (MedMNIST's ``getAUC``; equal to it when every class is present).
    ``balanced_accuracy`` is the mean recall over the classes present in ``y_true`` (scikit-learn's).
    """
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] < 2:
        raise ValueError(f"proba: expected shape (N, K) with K >= 2, got {proba.shape}")
    y_true = _labels(y_true, "y_true")
    n_classes = proba.shape[1]
    if len(y_true) != len(proba):
        raise ValueError(f"proba: {len(proba)} rows but y_true has {len(y_true)} labels")
    if y_true.min() < 0 or y_true.max() >= n_classes:
        raise ValueError(f"y_true: labels must lie in [0, {n_classes - 1}], got {np.unique(y_true).tolist()}")
    if not np.all(np.isfinite(proba)):
        raise ValueError("proba: contains NaN or infinite values")

    cm = confusion_matrix(y_true, proba.argmax(axis=1), n_classes)
    tp = np.diag(cm)
    support = cm.sum(axis=1)  # true samples per class
    predicted = cm.sum(axis=0)
    precision = _ratios(tp, predicted)
    recall = _ratios(tp, support)
    f1 = _ratios(2 * tp, support + predicted)  # = 2PR/(P+R), and 0 when tp = 0
    present = support > 0
    class_aucs = [roc_auc((y_true == k).astype(np.int64), proba[:, k]) for k in range(n_classes)]
    defined = [auc for auc in class_aucs if not np.isnan(auc)]
    weights = support / support.sum()
    return {
        "accuracy": float(tp.sum() / len(y_true)),
        "balanced_accuracy": float(recall[present].mean()),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "weighted_precision": float(weights @ precision),
        "weighted_recall": float(weights @ recall),
        "weighted_f1": float(weights @ f1),
        "auc": float(np.mean(defined)) if defined else float("nan"),
        "per_class_recall": [float(r) for r in recall],
        "confusion_matrix": cm.tolist(),
    }


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(K, K) int64 counts; rows are true classes, columns predicted ones."""
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve = P(score of a positive > score of a negative), ties counting half.

    Computed with the Mann-Whitney U statistic on average ranks, which equals the trapezoidal area
    under the ROC curve that scikit-learn integrates.
    """
    n_pos = int(np.sum(y_true == 1))
    n_neg = len(y_true) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    u = ranks[y_true == 1].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Sum over distinct thresholds of (recall increase) x precision: scikit-learn's step-wise AP."""
    n_pos = int(np.sum(y_true == 1))
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_true = scores[order], y_true[order]
    # one operating point per distinct score: the last index of each run of equal scores
    last_of_run = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(sorted_scores) - 1]
    tps = np.cumsum(sorted_true)[last_of_run]
    precision = tps / (last_of_run + 1)
    recall_gain = np.diff(np.r_[0, tps]) / n_pos
    return float(np.sum(recall_gain * precision))


def specificity_at_recall(y_true: np.ndarray, scores: np.ndarray, target_recall: float) -> float:
    """The highest specificity among the thresholds whose recall reaches ``target_recall``.

    Read off the ROC curve (one point per distinct score), so it does not depend on any fixed
    threshold: it is the specificity phase3's ``target_recall`` policy would get on these data.
    NaN when one class is absent.
    """
    if not 0.0 < target_recall <= 1.0:
        raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
    n_pos = int(np.sum(y_true == 1))
    n_neg = len(y_true) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_true = scores[order], y_true[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(sorted_scores) - 1]
    tps = np.cumsum(sorted_true)[last_of_run]
    fps = last_of_run + 1 - tps
    # recall rises with each lower threshold and specificity falls: the first point reaching the
    # target has the best specificity (the last point, threshold = lowest score, has recall 1)
    first = int(np.argmax(tps >= target_recall * n_pos - 1e-9))
    return float(1.0 - fps[first] / n_neg)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of their ranks (scipy's ``rankdata`` 'average')."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
    ends = np.r_[starts[1:], len(values)]
    mean_rank = (starts + ends + 1) / 2  # mean of ranks start+1 .. end
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def _labels(y, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D array of labels, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name}: labels must be integers, got dtype {y.dtype}")
    return y.astype(np.int64)


def _scores(p, n: int) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.shape != (n,):
        raise ValueError(f"p_malignant: expected shape ({n},) like y_true, got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("p_malignant: contains NaN or infinite values")
    return p


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _ratios(numerators: np.ndarray, denominators: np.ndarray) -> np.ndarray:
    out = np.zeros(len(numerators))
    np.divide(numerators, denominators, out=out, where=denominators > 0)
    return out


def _f_beta(tp: int, fp: int, fn: int, beta: float) -> float:
    """(1 + b^2) P R / (b^2 P + R) written on counts, so it is 0 (not NaN) when tp = 0."""
    b2 = beta * beta
    return _ratio((1 + b2) * tp, (1 + b2) * tp + b2 * fn + fp)
