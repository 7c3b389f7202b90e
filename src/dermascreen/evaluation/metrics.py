"""Every classification metric of the project: one implementation for engines and reports.

Thin wrappers over scikit-learn (confusion matrices, precision / recall / F, ROC AUC, average
precision, the ROC curve) that fix the project's conventions and validate inputs with errors
naming the argument (checked in ``tests/evaluation/test_metrics.py``):

- A ratio whose denominator is zero is 0, never NaN (scikit-learn's ``zero_division=0``): a model
  that predicts no malignant lesion has precision 0.
- ROC AUC is NaN only when one class is absent from ``y_true`` (it is undefined there); average
  precision (``pr_auc``) is NaN only when there is no positive sample.
- ``spec_at_recall`` (the best specificity at recall >= ``target_recall``, over every threshold) is
  NaN when one class is absent, like ROC AUC: it reads the ROC curve, not the 0.5 decision.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


TARGET_RECALL = 0.90  # phase3's operating recall, the default target of ``spec_at_recall``


def binary_metrics(y_true, p_malignant, threshold: float = 0.5, target_recall: float = TARGET_RECALL) -> dict:
    """Metrics of a malignant-vs-benign classifier; a sample is called malignant when p >= threshold.

    Returns accuracy, precision, recall (sensitivity), specificity, f1, f2, roc_auc, pr_auc
    (average precision), spec_at_recall (threshold-free: ``specificity_at_recall`` at
    ``target_recall``) and the confusion counts tn, fp, fn, tp, as Python numbers.
    """
    y_true, scores = _binary_inputs(y_true, p_malignant)
    _check_target(target_recall)
    curve = _roc_curve(y_true, scores)  # one curve for both threshold-free metrics
    rates = {key: value.item() for key, value in _decision_rates(y_true, scores, np.array([threshold])).items()}
    return {
        **{key: rates[key] for key in ("accuracy", "precision", "recall", "specificity", "f1", "f2")},
        "roc_auc": _area(curve),
        "pr_auc": average_precision(y_true, scores),
        "spec_at_recall": _specificity_at(curve, target_recall),
        **{key: int(rates[key]) for key in ("tn", "fp", "fn", "tp")},
    }


def decision_rates(y_true, scores, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """The confusion counts and the threshold-dependent metrics at each of ``thresholds`` at once.

    ``{"tn", "fp", "fn", "tp", "accuracy", "precision", "recall", "specificity", "f1", "f2"}``, one
    value per threshold (a sample is called malignant when its score >= the threshold). Counted by
    binary search in the sorted scores of each class: a sweep over every distinct validation score
    costs one sort, not one pass per threshold.
    """
    return _decision_rates(*_binary_inputs(y_true, scores), np.asarray(thresholds, dtype=np.float64))


def _decision_rates(y_true: np.ndarray, scores: np.ndarray, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """``decision_rates`` on validated inputs (``binary_metrics`` has validated them already)."""
    positives, negatives = np.sort(scores[y_true == 1]), np.sort(scores[y_true == 0])
    tp = len(positives) - np.searchsorted(positives, thresholds, side="left")
    fp = len(negatives) - np.searchsorted(negatives, thresholds, side="left")
    fn, tn = len(positives) - tp, len(negatives) - fp
    return {
        "tn": tn, "fp": fp, "fn": fn, "tp": tp,
        "accuracy": (tp + tn) / len(y_true),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "f1": _f_beta(tp, fp, fn, beta=1.0),
        "f2": _f_beta(tp, fp, fn, beta=2.0),
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

    labels, y_pred = np.arange(n_classes), proba.argmax(axis=1)
    cm = skm.confusion_matrix(y_true, y_pred, labels=labels)  # rows: true, columns: predicted
    precision, recall, f1, support = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels,
                                                                         zero_division=0)
    present = support > 0
    class_aucs = [roc_auc((y_true == k).astype(np.int64), proba[:, k]) for k in range(n_classes)]
    defined = [auc for auc in class_aucs if not np.isnan(auc)]
    weights = support / support.sum()
    return {
        "accuracy": float(np.trace(cm) / len(y_true)),
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


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """The area under scikit-learn's ROC curve (trapezoidal, ties counting half); NaN when one class
    is absent. Equal to ``roc_auc_score``, at half its cost (no second curve)."""
    return _area(_roc_curve(y_true, scores))


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """scikit-learn's step-wise average precision; NaN without a positive sample."""
    return float(skm.average_precision_score(y_true, scores)) if np.any(y_true == 1) else float("nan")


def specificity_at_recall(y_true: np.ndarray, scores: np.ndarray, target_recall: float) -> float:
    """The highest specificity among the thresholds whose recall reaches ``target_recall``.

    Read off scikit-learn's ROC curve (every distinct score a threshold), so it does not depend on
    any fixed threshold: it is the specificity phase3's ``target_recall`` policy would get on these
    data. NaN when one class is absent.
    """
    _check_target(target_recall)
    return _specificity_at(_roc_curve(y_true, scores), target_recall)


def _roc_curve(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(fpr, tpr) at every distinct score, or None when one class is absent (the curve is undefined)."""
    if not (np.any(y_true == 1) and np.any(y_true != 1)):
        return None
    fpr, tpr, _ = skm.roc_curve(y_true, scores, drop_intermediate=False)
    return fpr, tpr


def _area(curve: tuple[np.ndarray, np.ndarray] | None) -> float:
    return float("nan") if curve is None else float(skm.auc(*curve))


def _specificity_at(curve: tuple[np.ndarray, np.ndarray] | None, target_recall: float) -> float:
    if curve is None:
        return float("nan")
    fpr, tpr = curve
    # the last point (threshold = the lowest score) has recall 1, so the set is never empty
    return float(np.max(1.0 - fpr[tpr >= target_recall - 1e-12]))


def _check_target(target_recall: float) -> None:
    if not 0.0 < target_recall <= 1.0:
        raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")


def _binary_inputs(y_true, p_malignant) -> tuple[np.ndarray, np.ndarray]:
    y_true = _labels(y_true, "y_true")
    scores = _scores(p_malignant, len(y_true))
    if not set(np.unique(y_true)) <= {0, 1}:
        raise ValueError(f"y_true: binary labels must be 0 or 1, got values {np.unique(y_true).tolist()}")
    return y_true, scores


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


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, and 0 (scikit-learn's ``zero_division=0``) where the denominator is 0."""
    numerator, denominator = np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _f_beta(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, beta: float) -> np.ndarray:
    """(1 + b^2) P R / (b^2 P + R) written on counts, so it is 0 (not NaN) when tp = 0."""
    b2 = beta * beta
    return _ratio((1 + b2) * tp, (1 + b2) * tp + b2 * fn + fp)
