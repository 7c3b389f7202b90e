"""McNemar's test: discordant counts, the method switch, and its p-values by hand and against scipy."""

import numpy as np
import pytest
from scipy.stats import binomtest, chi2

from dermascreen.evaluation.mcnemar import (chi_square_corrected, discordant_counts, exact_p_value, holm_adjust,
                                            mcnemar_test)


@pytest.mark.parametrize("b, c", [(0, 1), (3, 9), (7, 7), (12, 0), (1, 20), (40, 25)])
def test_exact_p_value_matches_scipy_binomtest(b, c):
    assert exact_p_value(b, c) == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-12)


def test_exact_p_value_by_hand():
    # Binomial(5, 1/2): P(0) = 1/32, two-sided 2/32; Binomial(2, 1/2) with b = c = 1: 1
    assert exact_p_value(0, 5) == pytest.approx(2 / 32) and exact_p_value(1, 1) == 1.0
    assert exact_p_value(0, 0) == 1.0


def test_chi_square_with_continuity_by_hand():
    statistic, p_value = chi_square_corrected(30, 12)
    assert statistic == pytest.approx((18 - 1) ** 2 / 42)
    assert p_value == pytest.approx(chi2.sf((18 - 1) ** 2 / 42, df=1), rel=1e-10)


def _pairs(b: int, c: int, agree: int):
    """Labels all 1; model A right on b + agree, B right on c + agree."""
    y = np.ones(b + c + agree, dtype=np.int64)
    a = np.r_[np.ones(b), np.zeros(c), np.ones(agree)].astype(np.int64)
    other = np.r_[np.zeros(b), np.ones(c), np.ones(agree)].astype(np.int64)
    return y, a, other


def test_method_switches_at_the_discordant_count():
    small = mcnemar_test(*_pairs(4, 10, 50))
    assert (small["b"], small["c"], small["method"]) == (4, 10, "exact binomial")
    assert small["p_value"] == pytest.approx(binomtest(4, 14, 0.5).pvalue)
    large = mcnemar_test(*_pairs(20, 5, 50))
    assert large["method"] == "chi-square with continuity correction"
    assert large["statistic"] == pytest.approx(14**2 / 25)


def test_no_discordant_pairs_means_no_evidence():
    result = mcnemar_test(*_pairs(0, 0, 10))
    assert result["p_value"] == 1.0 and result["n_discordant"] == 0


def test_unpaired_predictions_are_an_error():
    with pytest.raises(ValueError, match="paired predictions"):
        discordant_counts(np.ones(3), np.ones(3), np.ones(4))


def test_holm_adjustment_by_hand():
    # sorted 0.01, 0.02, 0.04 of m = 3: x3, x2, x1 = 0.03, 0.04, 0.04 (made non-decreasing), input order kept
    assert holm_adjust([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm_adjust([0.3, 0.6]) == pytest.approx([0.6, 0.6])
    assert holm_adjust([0.9, 0.8]) == [1.0, 1.0]
    assert holm_adjust([0.2]) == [0.2]
