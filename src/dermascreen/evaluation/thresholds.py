"""Decision-threshold policies, calibrated on validation scores only.

A sample is called malignant when ``p_malignant >= threshold`` (the convention of
``binary_metrics``). Between two consecutive distinct scores every threshold gives the same
predictions, so the distinct validation scores are the only candidates a policy needs: each
policy's threshold is one of them (or 0.5 for ``default``), never an interpolated value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dermascreen.evaluation.metrics import binary_metrics, decision_rates

POLICIES = ("default", "target_recall", "max_f2", "youden")
SWEEP_COLUMNS = ("threshold", "recall", "precision", "specificity", "f1", "f2")
DEFAULT_THRESHOLD = 0.5


def sweep_table(y_true: np.ndarray, p_malignant: np.ndarray, thresholds: np.ndarray) -> pd.DataFrame:
    """One row per threshold (ascending): recall, precision, specificity, F1, F2 at that threshold."""
    thresholds = np.sort(np.asarray(thresholds, dtype=np.float64))
    rates = decision_rates(y_true, p_malignant, thresholds)
    return pd.DataFrame({"threshold": thresholds, **{k: rates[k] for k in SWEEP_COLUMNS[1:]}},
                        columns=list(SWEEP_COLUMNS))


def candidate_thresholds(p_malignant: np.ndarray) -> np.ndarray:
    """The distinct scores: every achievable set of predictions, ascending."""
    return np.unique(np.asarray(p_malignant, dtype=np.float64))


def choose_threshold(sweep: pd.DataFrame, policy: str, target_recall: float = 0.90) -> tuple[float, str]:
    """Apply ``policy`` to a sweep over the candidate thresholds; returns (threshold, why)."""
    if policy == "default":
        return DEFAULT_THRESHOLD, "the conventional 0.5 on the malignant probability"
    if policy == "target_recall":
        return _target_recall(sweep, target_recall)
    if policy == "max_f2":
        return _argmax(sweep, sweep["f2"], "maximises validation F2 (recall weighted 4x precision)")
    if policy == "youden":
        youden = sweep["recall"] + sweep["specificity"] - 1.0
        return _argmax(sweep, youden, "maximises Youden's J = recall + specificity - 1 on validation")
    raise ValueError(f"unknown threshold policy {policy!r}; expected one of {POLICIES}")


def _target_recall(sweep: pd.DataFrame, target: float) -> tuple[float, str]:
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target_recall must be in (0, 1], got {target}")
    # Recall falls as the threshold rises, so the last qualifying row is the highest threshold.
    reaching = sweep[sweep["recall"] >= target]
    if reaching.empty:
        raise ValueError(f"no threshold reaches validation recall {target}: are there malignant samples?")
    threshold = float(reaching["threshold"].iloc[-1])
    return threshold, f"the highest threshold whose validation recall reaches {target:.2f}"


def _argmax(sweep: pd.DataFrame, score: pd.Series, why: str) -> tuple[float, str]:
    # Ties go to the highest threshold: the same score with fewer benign lesions flagged.
    values = score.to_numpy(dtype=np.float64)
    best = np.flatnonzero(values == np.nanmax(values))[-1]
    return float(sweep["threshold"].iloc[best]), why


def calibrate_threshold(y_true: np.ndarray, p_malignant: np.ndarray, policy: str,
                        target_recall: float = 0.90) -> dict:
    """Every policy's validation operating point, and the configured policy's threshold.

    Returns ``{"policy", "threshold", "reason", "target_recall", "operating_points":
    {policy: {"threshold", "reason", **binary_metrics}}}``.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown threshold policy {policy!r}; expected one of {POLICIES}")
    sweep = sweep_table(y_true, p_malignant, candidate_thresholds(p_malignant))
    points = {}
    for name in POLICIES:
        threshold, reason = choose_threshold(sweep, name, target_recall)
        points[name] = {"threshold": threshold, "reason": reason,
                        **binary_metrics(y_true, p_malignant, threshold)}
    chosen = points[policy]
    return {"policy": policy, "threshold": chosen["threshold"], "reason": chosen["reason"],
            "target_recall": float(target_recall), "operating_points": points}
