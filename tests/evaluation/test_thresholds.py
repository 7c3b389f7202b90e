"""Threshold policies on constructed validation scores with hand-computed answers."""

import numpy as np
import pytest
from sklearn import metrics as skm

from dermascreen.evaluation.thresholds import calibrate_threshold, candidate_thresholds, sweep_table

# Positives at 0.3, 0.5, 0.7, 0.8, 0.9; negatives at 0.05, 0.1, 0.2, 0.4, 0.6.
SCORES = np.array([0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
LABELS = np.array([0, 0, 0, 1, 0, 1, 0, 1, 1, 1])


def test_target_recall_is_the_highest_threshold_reaching_the_target():
    # 0.9 of 5 positives needs all 5: the lowest positive score. 0.8 needs 4: the 4th highest.
    assert calibrate_threshold(LABELS, SCORES, "target_recall", 0.90)["threshold"] == 0.3
    result = calibrate_threshold(LABELS, SCORES, "target_recall", 0.80)
    assert result["threshold"] == 0.5
    assert result["operating_points"]["target_recall"]["recall"] == 0.8
    # the next candidate up (0.6) keeps only 3 of 5 positives
    assert result["operating_points"]["max_f2"]["threshold"] < 0.6


def test_max_f2_picks_the_hand_computed_maximum():
    # F2 = 5tp / (5tp + 4fn + fp): 25/27 at 0.3 beats 25/28 at 0.2 and 20/25 at 0.5.
    result = calibrate_threshold(LABELS, SCORES, "max_f2")
    assert result["threshold"] == 0.3
    assert result["operating_points"]["max_f2"]["f2"] == pytest.approx(25 / 27)


def test_youden_breaks_ties_towards_the_highest_threshold():
    # J = 0.6 at 0.3 (1 + 0.6 - 1), 0.5 (0.8 + 0.8 - 1) and 0.7 (0.6 + 1 - 1); 0.7 flags fewest.
    result = calibrate_threshold(LABELS, SCORES, "youden")
    assert result["threshold"] == 0.7
    point = result["operating_points"]["youden"]
    assert point["recall"] + point["specificity"] - 1 == pytest.approx(0.6)


def test_default_policy_and_every_policy_reported():
    result = calibrate_threshold(LABELS, SCORES, "default")
    assert result["threshold"] == 0.5 and result["policy"] == "default"
    assert set(result["operating_points"]) == {"default", "target_recall", "max_f2", "youden"}
    assert result["operating_points"]["default"]["tp"] == 4


def test_sweep_table_rows_match_thresholds_and_recall_falls():
    table = sweep_table(LABELS, SCORES, candidate_thresholds(SCORES))
    assert list(table.columns) == ["threshold", "recall", "precision", "specificity", "f1", "f2"]
    assert table["threshold"].tolist() == SCORES.tolist()
    assert (np.diff(table["recall"]) <= 0).all() and (np.diff(table["specificity"]) >= 0).all()
    assert table.loc[table["threshold"] == 0.6, "precision"].item() == pytest.approx(3 / 4)


def test_sweep_on_tied_scores_equals_sklearn_at_every_threshold():
    # The sweep counts by binary search in sorted scores; rounding makes many ties, and thresholds
    # between, below and above the scores must all count p >= threshold as malignant.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    scores = np.round(np.clip(0.3 * labels + 0.7 * rng.random(400), 0, 1), 1)
    thresholds = np.r_[candidate_thresholds(scores), 0.25, -1.0, 2.0]
    table = sweep_table(labels, scores, thresholds)
    for row in table.itertuples():
        called = (scores >= row.threshold).astype(int)
        assert row.recall == pytest.approx(skm.recall_score(labels, called, zero_division=0))
        assert row.specificity == pytest.approx(skm.recall_score(labels, called, pos_label=0, zero_division=0))
        assert row.precision == pytest.approx(skm.precision_score(labels, called, zero_division=0))
        assert row.f1 == pytest.approx(skm.f1_score(labels, called, zero_division=0))
        assert row.f2 == pytest.approx(skm.fbeta_score(labels, called, beta=2, zero_division=0))


def test_bad_policy_and_unreachable_target_are_errors():
    with pytest.raises(ValueError, match="unknown threshold policy 'median'"):
        calibrate_threshold(LABELS, SCORES, "median")
    with pytest.raises(ValueError, match="target_recall must be in"):
        calibrate_threshold(LABELS, SCORES, "target_recall", 1.5)
    with pytest.raises(ValueError, match="no threshold reaches validation recall"):
        calibrate_threshold(np.zeros(10, dtype=int), SCORES, "target_recall", 0.9)
    with pytest.raises(ValueError, match="binary labels must be 0 or 1"):
        sweep_table(np.full(10, 2), SCORES, candidate_thresholds(SCORES))
