"""metrics.py against scikit-learn on random data, and its conventions on degenerate inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from dermascreen.evaluation.metrics import binary_metrics, multiclass_metrics, specificity_at_recall


def _binary_case(seed: int, n: int = 300, rounded: bool = False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.35 * y + rng.random(n) * 0.65, 0, 1)
    # rounding creates many tied scores, the hard case for both AUCs
    return y, np.round(p, 1) if rounded else p


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("rounded", [False, True])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_binary_metrics_match_sklearn(seed, rounded, threshold):
    y, p = _binary_case(seed, rounded=rounded)
    pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()

    got = binary_metrics(y, p, threshold)

    assert (got["tn"], got["fp"], got["fn"], got["tp"]) == (tn, fp, fn, tp)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred, zero_division=0))
    assert got["recall"] == pytest.approx(skm.recall_score(y, pred, zero_division=0))
    assert got["specificity"] == pytest.approx(skm.recall_score(y, pred, pos_label=0, zero_division=0))
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred, zero_division=0))
    assert got["f2"] == pytest.approx(skm.fbeta_score(y, pred, beta=2, zero_division=0))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert got["pr_auc"] == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("rounded", [False, True])
@pytest.mark.parametrize("target", [0.5, 0.9, 1.0])
def test_spec_at_recall_is_the_best_specificity_on_sklearns_roc_curve(seed, rounded, target):
    y, p = _binary_case(seed, rounded=rounded)
    fpr, tpr, _ = skm.roc_curve(y, p, drop_intermediate=False)

    expected = float(np.max(1.0 - fpr[tpr >= target]))

    assert specificity_at_recall(y, p, target) == pytest.approx(expected, abs=1e-12)
    assert binary_metrics(y, p, target_recall=target)["spec_at_recall"] == pytest.approx(expected, abs=1e-12)


def test_spec_at_recall_does_not_depend_on_the_threshold_and_is_nan_without_a_class():
    y, p = _binary_case(0)
    assert len({binary_metrics(y, p, t)["spec_at_recall"] for t in (0.1, 0.5, 0.9)}) == 1
    assert len({binary_metrics(y, 0.5 * p, 0.5)["spec_at_recall"], binary_metrics(y, p)["spec_at_recall"]}) == 1
    assert math.isnan(binary_metrics(np.zeros(4, dtype=int), np.array([0.1, 0.6, 0.2, 0.9]))["spec_at_recall"])
    with pytest.raises(ValueError, match="target_recall"):
        specificity_at_recall(y, p, 0.0)


def test_no_positive_prediction_gives_zero_precision_not_nan():
    y = np.array([0, 1, 0, 1, 0])
    got = binary_metrics(y, np.full(5, 0.1))

    assert got["precision"] == 0.0 and got["recall"] == 0.0 and got["f1"] == 0.0 and got["f2"] == 0.0
    assert got["specificity"] == 1.0
    assert got["roc_auc"] == 0.5  # all scores tied


def test_all_malignant_classifier_has_full_recall_and_zero_specificity():
    y = np.array([0, 0, 0, 1])
    got = binary_metrics(y, np.full(4, 0.9))

    assert got["recall"] == 1.0 and got["specificity"] == 0.0 and got["precision"] == 0.25


def test_auc_is_nan_only_when_a_class_is_absent():
    only_benign = binary_metrics(np.zeros(4, dtype=int), np.array([0.1, 0.6, 0.2, 0.9]))
    only_malignant = binary_metrics(np.ones(4, dtype=int), np.array([0.1, 0.6, 0.2, 0.9]))

    assert math.isnan(only_benign["roc_auc"]) and math.isnan(only_benign["pr_auc"])
    assert only_benign["recall"] == 0.0 and only_benign["specificity"] == 0.5
    assert math.isnan(only_malignant["roc_auc"])
    assert only_malignant["pr_auc"] == pytest.approx(skm.average_precision_score(np.ones(4), [0.1, 0.6, 0.2, 0.9]))


def test_perfect_separation():
    got = binary_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.7, 0.8]))

    assert got["roc_auc"] == 1.0 and got["pr_auc"] == 1.0 and got["accuracy"] == 1.0


def _multiclass_case(seed: int, n: int = 400, k: int = 7):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba


@pytest.mark.parametrize("seed", range(4))
def test_multiclass_metrics_match_sklearn(seed):
    y, proba = _multiclass_case(seed)
    pred = proba.argmax(axis=1)
    labels = list(range(7))

    got = multiclass_metrics(y, proba)

    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    for average in ("macro", "weighted"):
        kwargs = {"labels": labels, "average": average, "zero_division": 0}
        assert got[f"{average}_precision"] == pytest.approx(skm.precision_score(y, pred, **kwargs))
        assert got[f"{average}_recall"] == pytest.approx(skm.recall_score(y, pred, **kwargs))
        assert got[f"{average}_f1"] == pytest.approx(skm.f1_score(y, pred, **kwargs))
    assert got["auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr", average="macro"))
    assert got["per_class_recall"] == pytest.approx(skm.recall_score(y, pred, labels=labels, average=None).tolist())
    assert got["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=labels).tolist()


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")  # the case under test
def test_multiclass_with_an_absent_class():
    y, proba = _multiclass_case(7, n=200, k=4)
    keep = y != 2  # class 2 never occurs in y_true; it may still be predicted
    y, proba = y[keep], proba[keep]
    pred = proba.argmax(axis=1)

    got = multiclass_metrics(y, proba)

    present = [0, 1, 3]
    expected_auc = np.mean([skm.roc_auc_score(y == k, proba[:, k]) for k in present])
    assert got["auc"] == pytest.approx(expected_auc)
    assert got["per_class_recall"][2] == 0.0
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    expected_f1 = skm.f1_score(y, pred, labels=[0, 1, 2, 3], average="macro", zero_division=0)
    assert got["macro_f1"] == pytest.approx(expected_f1)


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 1, 2], [0.1, 0.2, 0.3], "binary labels must be 0 or 1"),
        ([0, 1], [0.1, 0.2, 0.3], r"expected shape \(2,\)"),
        ([0, 1], [0.1, float("nan")], "NaN"),
        ([], [], "non-empty"),
        ([0.0, 1.0], [0.1, 0.2], "must be integers"),
    ],
)
def test_binary_metrics_reject_bad_input(y, p, message):
    with pytest.raises(ValueError, match=message):
        binary_metrics(np.asarray(y), p)


def test_multiclass_metrics_reject_labels_out_of_range():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]"):
        multiclass_metrics(np.array([0, 3]), np.full((2, 3), 1 / 3))
