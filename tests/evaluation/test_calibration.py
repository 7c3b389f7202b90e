"""Reliability bins and ECE on calibrated and miscalibrated constructions."""

import numpy as np
import pytest

from dermascreen.evaluation.calibration import (apply_calibrator, expected_calibration_error, fit_calibrator,
                                                reliability_bins)


def test_exactly_calibrated_bins_have_zero_ece():
    # In each bin the predicted probability equals the observed malignant share.
    p = np.r_[np.full(20, 0.15), np.full(20, 0.55), np.full(20, 0.95)]
    y = np.r_[np.arange(20) < 3, np.arange(20) < 11, np.arange(20) < 19].astype(int)
    bins = reliability_bins(y, p, n_bins=10)
    assert bins["count"].sum() == 60 and (bins["count"] > 0).sum() == 3
    assert expected_calibration_error(bins) == pytest.approx(0.0, abs=1e-12)


def test_sampled_calibrated_scores_have_small_ece():
    rng = np.random.default_rng(0)
    p = rng.random(100_000)
    y = (rng.random(p.size) < p).astype(int)
    assert expected_calibration_error(reliability_bins(y, p, 10)) < 0.01


def test_overconfident_scores_have_the_expected_ece():
    p = np.full(100, 0.9)
    y = (np.arange(100) < 50).astype(int)
    assert expected_calibration_error(reliability_bins(y, p, 10)) == pytest.approx(0.4)


def test_one_falls_in_the_last_bin_and_empty_bins_are_nan():
    bins = reliability_bins(np.array([1, 0]), np.array([1.0, 0.0]), n_bins=4)
    assert bins["count"].tolist() == [1, 0, 0, 1]
    assert np.isnan(bins.loc[1, "mean_predicted"])


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        reliability_bins(np.ones(3), np.ones(4))


def _miscalibrated(seed: int, n: int = 4000):
    """Labels drawn from true probabilities q; the model reports an overconfident p = sigmoid(3 logit q)."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(0.02, 0.98, n)
    y = (rng.random(n) < q).astype(int)
    logit_q = np.log(q / (1 - q))
    return y, 1 / (1 + np.exp(-3 * logit_q))


@pytest.mark.parametrize("method", ["temperature", "isotonic"])
def test_calibration_fitted_on_one_set_lowers_ece_on_another(method):
    y_fit, p_fit = _miscalibrated(0)
    y_new, p_new = _miscalibrated(1)
    calibrator = fit_calibrator(y_fit, p_fit, method)
    before = expected_calibration_error(reliability_bins(y_new, p_new))
    after = expected_calibration_error(reliability_bins(y_new, apply_calibrator(calibrator, p_new)))
    assert before > 0.1 and after < 0.03 and after < before / 4
    if method == "temperature":
        assert calibrator["temperature"] == pytest.approx(3.0, rel=0.1)  # undoes the 3x logit


def test_calibrators_are_monotone_and_none_is_the_identity():
    y, p = _miscalibrated(2, 500)
    grid = np.linspace(0, 1, 101)
    for method in ("temperature", "isotonic"):
        assert np.all(np.diff(apply_calibrator(fit_calibrator(y, p, method), grid)) >= 0)
    assert np.array_equal(apply_calibrator(fit_calibrator(y, p, "none"), grid), grid)
    with pytest.raises(ValueError, match="calibration method 'platt' unknown"):
        fit_calibrator(y, p, "platt")
