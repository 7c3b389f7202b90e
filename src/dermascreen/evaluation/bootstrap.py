"""Stratified, seeded bootstrap percentile intervals for every test metric.

Each resample draws the malignant and the benign samples separately, with replacement and in
their original numbers, so every resample has the test split's prevalence: recall and
specificity never become undefined and the counts stay comparable across resamples.
"""

from __future__ import annotations

import numpy as np

from dermascreen.evaluation.metrics import binary_metrics


def confusion_rates(metrics: dict) -> dict[str, float]:
    """The four confusion-matrix rates from the counts of ``binary_metrics``."""
    tn, fp, fn, tp = (float(metrics[k]) for k in ("tn", "fp", "fn", "tp"))
    return {
        "tpr": _ratio(tp, tp + fn), "fnr": _ratio(fn, tp + fn),
        "tnr": _ratio(tn, tn + fp), "fpr": _ratio(fp, tn + fp),
    }


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def metrics_with_rates(y_true: np.ndarray, p_malignant: np.ndarray, threshold: float) -> dict[str, float]:
    """``binary_metrics`` plus the confusion-matrix rates: everything the report gives intervals for."""
    metrics = binary_metrics(y_true, p_malignant, threshold)
    return {key: float(value) for key, value in {**metrics, **confusion_rates(metrics)}.items()}


def stratified_resamples(y_true: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, N) indices; row r keeps the class counts of ``y_true``."""
    y_true = np.asarray(y_true)
    rng = np.random.default_rng(seed)
    columns = []
    for label in np.unique(y_true):
        members = np.flatnonzero(y_true == label)
        columns.append(rng.choice(members, size=(n_resamples, members.size), replace=True))
    return np.concatenate(columns, axis=1)


def bootstrap_intervals(y_true: np.ndarray, p_malignant: np.ndarray, threshold: float,
                        n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict:
    """``{metric: {"estimate", "low", "high"}}``: point estimate on the full test split and
    the percentile interval over ``n_resamples`` stratified resamples."""
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive number of resamples, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    y_true = np.asarray(y_true)
    p_malignant = np.asarray(p_malignant, dtype=np.float64)
    estimate = metrics_with_rates(y_true, p_malignant, threshold)
    samples = {key: [] for key in estimate}
    for rows in stratified_resamples(y_true, n_resamples, seed):
        for key, value in metrics_with_rates(y_true[rows], p_malignant[rows], threshold).items():
            samples[key].append(value)
    tail = 100.0 * (1.0 - confidence) / 2.0
    intervals = {}
    for key, values in samples.items():
        low, high = np.nanpercentile(np.asarray(values), [tail, 100.0 - tail])
        intervals[key] = {"estimate": estimate[key], "low": float(low), "high": float(high)}
    return intervals


def subtype_intervals(labels: np.ndarray, p_malignant: np.ndarray, threshold: float, class_names: tuple[str, ...],
                      malignant: frozenset[str], n_resamples: int = 1000, seed: int = 0,
                      confidence: float = 0.95) -> dict:
    """Per 7-class subtype, the share of its samples called malignant, with a bootstrap interval.

    For a malignant subtype that share is its recall (sensitivity), for a benign one its false
    positive rate. ``{name: {"kind": "recall" | "fpr", "n", "estimate", "low", "high"}}`` in label
    order; a subtype absent from ``labels`` is left out. Each subtype's samples are resampled on
    their own (with replacement, same count), as the stratified resamples keep every class count.
    """
    labels = np.asarray(labels)
    flagged = (np.asarray(p_malignant, dtype=np.float64) >= threshold).astype(np.float64)
    rng = np.random.default_rng(seed)
    tail = 100.0 * (1.0 - confidence) / 2.0
    out = {}
    for label, name in enumerate(class_names):
        members = np.flatnonzero(labels == label)
        if members.size == 0:
            continue
        shares = flagged[rng.choice(members, size=(n_resamples, members.size), replace=True)].mean(axis=1)
        low, high = np.percentile(shares, [tail, 100.0 - tail])
        out[name] = {"kind": "recall" if name in malignant else "fpr", "n": int(members.size),
                     "estimate": float(flagged[members].mean()), "low": float(low), "high": float(high)}
    return out


def paired_difference_intervals(labels: np.ndarray, predicted_a: np.ndarray, predicted_b: np.ndarray,
                                n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Accuracy and balanced-accuracy differences A - B on the same images, with percentile intervals.

    ``predicted_a`` (S_a, N) and ``predicted_b`` (S_b, N): the predicted classes of each model's
    seeds; a model's metric is its mean over seeds. Each resample draws the images once for both
    models (paired), stratified by ``labels`` so every class keeps its count.
    ``{metric: {"estimate", "low", "high"}}``.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    correct_a = np.asarray(predicted_a) == labels  # (S_a, N)
    correct_b = np.asarray(predicted_b) == labels

    def difference(rows: np.ndarray) -> dict[str, float]:
        a, b = correct_a[:, rows], correct_b[:, rows]
        y = labels[rows]
        # a class's recall, averaged over seeds: every seed sees the same members
        balanced = [a[:, y == c].mean() - b[:, y == c].mean() for c in classes]
        return {"accuracy": float(a.mean() - b.mean()), "balanced_accuracy": float(np.mean(balanced))}

    estimate = difference(np.arange(labels.size))
    samples = [difference(rows) for rows in stratified_resamples(labels, n_resamples, seed)]
    tail = 100.0 * (1.0 - confidence) / 2.0
    return {key: {"estimate": estimate[key],
                  **dict(zip(("low", "high"), map(float, np.percentile([s[key] for s in samples],
                                                                        [tail, 100.0 - tail])), strict=True))}
            for key in estimate}
