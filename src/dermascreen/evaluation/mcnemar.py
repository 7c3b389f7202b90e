"""McNemar's test of two classifiers' paired predictions on the same samples.

Only the discordant pairs count: ``b`` samples the first model gets right and the second gets
wrong, ``c`` the reverse. Under the null hypothesis (equal error rates) ``b ~ Binomial(b + c,
1/2)``. With few discordant pairs the exact two-sided binomial p-value is used; otherwise the
chi-square statistic with Edwards' continuity correction, ``(|b - c| - 1)^2 / (b + c)`` on one
degree of freedom. The result says which one was used. Both p-values are scipy's
(``scipy.stats.binomtest``, ``scipy.stats.chi2``); this module only counts and chooses.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest, chi2

EXACT_BELOW = 25  # the usual rule: the chi-square approximation needs b + c >= 25


def discordant_counts(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> tuple[int, int]:
    """(b, c): samples only ``pred_a`` gets right, samples only ``pred_b`` gets right."""
    y_true, pred_a, pred_b = (np.asarray(a).ravel() for a in (y_true, pred_a, pred_b))
    if not (y_true.shape == pred_a.shape == pred_b.shape):
        raise ValueError(f"McNemar needs paired predictions: shapes {y_true.shape}, {pred_a.shape}, {pred_b.shape}")
    right_a, right_b = pred_a == y_true, pred_b == y_true
    return int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))


def exact_p_value(b: int, c: int) -> float:
    """Two-sided exact binomial p-value of ``b`` successes in ``b + c`` trials at 1/2 (1 without trials)."""
    return 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)


def chi_square_corrected(b: int, c: int) -> tuple[float, float]:
    """(statistic, p-value) of the continuity-corrected chi-square on 1 degree of freedom."""
    statistic = (abs(b - c) - 1.0) ** 2 / (b + c) if abs(b - c) > 1 else 0.0
    return statistic, float(chi2.sf(statistic, df=1))


def mcnemar_test(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray,
                 exact_below: int = EXACT_BELOW) -> dict:
    """``{"b", "c", "n_discordant", "method", "statistic", "p_value"}``.

    ``method`` is ``"exact binomial"`` when ``b + c < exact_below`` (``statistic`` is then
    ``min(b, c)``), else ``"chi-square with continuity correction"``.
    """
    b, c = discordant_counts(y_true, pred_a, pred_b)
    if b + c < exact_below:
        method, statistic, p_value = "exact binomial", float(min(b, c)), exact_p_value(b, c)
    else:
        method = "chi-square with continuity correction"
        statistic, p_value = chi_square_corrected(b, c)
    return {"b": b, "c": c, "n_discordant": b + c, "method": method,
            "statistic": float(statistic), "p_value": float(p_value)}


def holm_adjust(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order (family-wise error control for several
    comparisons): the k-th smallest of m is multiplied by m - k + 1, made non-decreasing, capped at 1."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adjusted
    return out.tolist()
