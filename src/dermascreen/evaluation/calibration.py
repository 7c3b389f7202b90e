"""Reliability-diagram bins, expected calibration error and recalibration of the malignant probability.

This is calibration of ``p_malignant`` itself (is a lesion given 0.3 malignant 30% of the
time?), not of the top-label confidence: the decision uses ``p_malignant`` against a threshold,
so that is the probability whose meaning matters.

A calibrator is a plain dict (it travels inside the exported model): ``{"method": "temperature",
"temperature": T}`` divides the malignant-vs-benign logit by T (temperature scaling of the two
logits, Guo et al. 2017), ``{"method": "isotonic", "x": [...], "y": [...]}`` is a monotone
piecewise-linear map, ``{"method": "none"}`` the identity. Fitted on validation only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import expit, logit
from sklearn.metrics import log_loss

CALIBRATION_METHODS = ("temperature", "isotonic", "none")
_EPS = 1e-12

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


def fit_calibrator(y_true: np.ndarray, p_malignant: np.ndarray, method: str) -> dict:
    """The calibrator of ``method`` fitted on (validation) labels and probabilities."""
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    p_malignant = np.asarray(p_malignant, dtype=np.float64).ravel()
    if method == "temperature":
        return {"method": "temperature", "temperature": fit_temperature(y_true, p_malignant)}
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p_malignant, y_true)
        return {"method": "isotonic", "x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
    if method == "none":
        return {"method": "none"}
    raise ValueError(f"calibration method {method!r} unknown; expected one of {CALIBRATION_METHODS}")


def fit_temperature(y_true: np.ndarray, p_malignant: np.ndarray) -> float:
    """The T > 0 minimising the negative log-likelihood of sigmoid(logit(p) / T) (searched on log T)."""
    logits = _logit(p_malignant)

    def nll(log_t: float) -> float:
        return float(log_loss(y_true, expit(logits / np.exp(log_t)), labels=[0, 1]))

    return float(np.exp(minimize_scalar(nll, bounds=(-5.0, 5.0), method="bounded", options={"xatol": 1e-6}).x))


def apply_calibrator(calibrator: dict, p_malignant: np.ndarray) -> np.ndarray:
    """Calibrated probabilities; every method is monotone non-decreasing in ``p_malignant``."""
    p = np.asarray(p_malignant, dtype=np.float64)
    method = calibrator.get("method")
    if method == "temperature":
        return expit(_logit(p) / float(calibrator["temperature"]))
    if method == "isotonic":
        return np.interp(p, calibrator["x"], calibrator["y"])
    if method == "none":
        return p
    raise ValueError(f"calibrator {calibrator!r}: unknown method; expected one of {CALIBRATION_METHODS}")


def _logit(p: np.ndarray) -> np.ndarray:
    """scipy's logit of ``p`` kept off 0 and 1, where it is infinite."""
    return logit(np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS))
