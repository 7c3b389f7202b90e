"""Reliability-diagram bins and expected calibration error of the malignant probability.

This is calibration of ``p_malignant`` itself (is a lesion given 0.3 malignant 30% of the
time?), not of the top-label confidence: the decision uses ``p_malignant`` against a threshold,
so that is the probability whose meaning matters.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BIN_COLUMNS = ("bin_low", "bin_high", "count", "mean_predicted", "observed_frequency")


def reliability_bins(y_true: np.ndarray, p_malignant: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Equal-width bins on [0, 1]: sample count, mean predicted probability and observed
    malignant frequency per bin (NaN for empty bins). The last bin includes 1.0."""
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    p_malignant = np.asarray(p_malignant, dtype=np.float64).ravel()
    if y_true.shape != p_malignant.shape:
        raise ValueError(f"labels {y_true.shape} and probabilities {p_malignant.shape} differ in shape")
    if n_bins < 1:
        raise ValueError(f"n_bins must be positive, got {n_bins}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(p_malignant, edges[1:-1], right=False), 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.bincount(which, weights=p_malignant, minlength=n_bins) / count
        observed = np.bincount(which, weights=y_true, minlength=n_bins) / count
    return pd.DataFrame({"bin_low": edges[:-1], "bin_high": edges[1:], "count": count,
                         "mean_predicted": mean_predicted, "observed_frequency": observed},
                        columns=list(BIN_COLUMNS))


def expected_calibration_error(bins: pd.DataFrame) -> float:
    """ECE = sum over bins of (bin share of samples) x |observed frequency - mean predicted|."""
    filled = bins[bins["count"] > 0]
    weights = filled["count"] / filled["count"].sum()
    gaps = (filled["observed_frequency"] - filled["mean_predicted"]).abs()
    return float((weights * gaps).sum())
