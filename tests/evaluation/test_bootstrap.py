"""Stratified bootstrap intervals: reproducible from the seed, covering the point estimate."""

import numpy as np
import pytest

from sklearn.metrics import accuracy_score, balanced_accuracy_score

from dermascreen.evaluation.bootstrap import (bootstrap_intervals, metrics_with_rates, paired_difference_intervals,
                                             stratified_resamples)


@pytest.fixture(scope="module")
def scored():
    rng = np.random.default_rng(7)
    y = (rng.random(300) < 0.2).astype(np.int64)
    p = np.clip(0.35 * y + rng.normal(0.35, 0.18, 300), 0.0, 1.0)
    return y, p


def test_resamples_keep_each_class_count(scored):
    y, _ = scored
    rows = stratified_resamples(y, 50, seed=1)
    assert rows.shape == (50, len(y))
    assert all(int(y[r].sum()) == int(y.sum()) for r in rows)


def test_intervals_are_reproducible_from_the_seed(scored):
    y, p = scored
    first = bootstrap_intervals(y, p, 0.5, n_resamples=1000, seed=3)
    assert first == bootstrap_intervals(y, p, 0.5, n_resamples=1000, seed=3)
    assert first != bootstrap_intervals(y, p, 0.5, n_resamples=1000, seed=4)


def test_every_metric_and_count_has_an_interval_covering_its_estimate(scored):
    y, p = scored
    intervals = bootstrap_intervals(y, p, 0.5, n_resamples=1000, seed=0)
    expected = {"accuracy", "precision", "recall", "specificity", "f1", "f2", "roc_auc", "pr_auc", "spec_at_recall",
                "tn", "fp", "fn", "tp", "tpr", "fnr", "tnr", "fpr"}
    assert set(intervals) == expected
    for key, entry in intervals.items():
        assert entry["low"] <= entry["estimate"] <= entry["high"], key
    assert intervals["recall"]["high"] - intervals["recall"]["low"] > 0.02  # real resampling noise
    # stratified: positives are fixed, so tp + fn never varies
    assert intervals["tp"]["low"] + intervals["fn"]["high"] == pytest.approx(y.sum())


def test_rates_come_from_the_counts():
    metrics = metrics_with_rates(np.array([0, 0, 0, 1, 1]), np.array([0.1, 0.6, 0.2, 0.9, 0.3]), 0.5)
    assert (metrics["tp"], metrics["fn"], metrics["fp"], metrics["tn"]) == (1, 1, 1, 2)
    assert metrics["tpr"] == 0.5 and metrics["fnr"] == 0.5
    assert metrics["fpr"] == pytest.approx(1 / 3) and metrics["tnr"] == pytest.approx(2 / 3)


def test_bad_arguments_are_errors(scored):
    y, p = scored
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_intervals(y, p, 0.5, n_resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_intervals(y, p, 0.5, confidence=95)


def test_subtype_shares_are_sklearns_recall_and_false_positive_rate():
    from sklearn.metrics import confusion_matrix, recall_score

    from dermascreen.evaluation.bootstrap import subtype_intervals

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 7, 400)
    labels[labels == 3] = 5  # class 3 absent: left out
    binary = np.isin(labels, [0, 1, 4]).astype(int)
    p = np.clip(0.3 * binary + rng.random(400) * 0.7, 0, 1)
    names = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
    got = subtype_intervals(labels, p, 0.5, names, frozenset({"akiec", "bcc", "mel"}), 300, seed=1)

    predicted = (p >= 0.5).astype(int)
    assert list(got) == ["akiec", "bcc", "bkl", "mel", "nv", "vasc"]
    for label, name in enumerate(names):
        if name not in got:
            continue
        rows = labels == label
        if name in ("akiec", "bcc", "mel"):
            expected = recall_score(binary[rows], predicted[rows], zero_division=0)
        else:
            tn, fp = confusion_matrix(binary[rows], predicted[rows], labels=[0, 1]).ravel()[:2]
            expected = fp / (fp + tn)
        entry = got[name]
        assert (entry["kind"], entry["n"]) == ("recall" if binary[rows][0] else "fpr", rows.sum())
        assert entry["estimate"] == pytest.approx(expected)
        assert entry["low"] <= entry["estimate"] <= entry["high"] and entry["high"] - entry["low"] > 0
    assert subtype_intervals(labels, p, 0.5, names, frozenset({"mel"}), 300, seed=1) != got


def test_paired_differences_match_a_direct_computation_and_vanish_for_identical_models():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    a = np.where(rng.random((2, 300)) < 0.8, labels, (labels + 1) % 3)  # two seeds, ~80% right
    b = np.where(rng.random((3, 300)) < 0.6, labels, (labels + 1) % 3)  # three seeds, ~60% right
    diff = paired_difference_intervals(labels, a, b, n_resamples=200, seed=1)
    expected_accuracy = np.mean([accuracy_score(labels, p) for p in a]) - np.mean([accuracy_score(labels, p) for p in b])
    expected_balanced = (np.mean([balanced_accuracy_score(labels, p) for p in a])
                         - np.mean([balanced_accuracy_score(labels, p) for p in b]))
    assert diff["accuracy"]["estimate"] == pytest.approx(expected_accuracy)
    assert diff["balanced_accuracy"]["estimate"] == pytest.approx(expected_balanced)
    assert 0.0 < diff["accuracy"]["low"] < diff["accuracy"]["estimate"] < diff["accuracy"]["high"]
    same = paired_difference_intervals(labels, a, a, n_resamples=50, seed=1)
    assert all(same[k] == {"estimate": 0.0, "low": 0.0, "high": 0.0} for k in same)  # paired: no noise
