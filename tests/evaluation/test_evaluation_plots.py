"""Curve tables agree with binary_metrics; figures mark the operating point."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from dermascreen.evaluation import plots
from dermascreen.evaluation.calibration import reliability_bins
from dermascreen.evaluation.metrics import binary_metrics
from dermascreen.evaluation.thresholds import sweep_table

Y = np.array([0, 0, 1, 0, 1, 1, 0, 1])
P = np.array([0.1, 0.3, 0.35, 0.4, 0.6, 0.7, 0.75, 0.9])


def test_roc_and_pr_points_match_binary_metrics_at_their_thresholds():
    roc, pr = plots.roc_table(Y, P), plots.pr_table(Y, P)
    for row in roc.itertuples():
        metrics = binary_metrics(Y, P, row.threshold)
        assert row.tpr == pytest.approx(metrics["recall"])
        assert row.fpr == pytest.approx(1 - metrics["specificity"])
    for row in pr.itertuples():
        metrics = binary_metrics(Y, P, row.threshold)
        assert (row.recall, row.precision) == pytest.approx((metrics["recall"], metrics["precision"]))


def test_confusion_table_is_one_row_per_sample_with_class_names():
    table = plots.confusion_table(Y, P, 0.5)
    assert list(table.columns) == ["actual", "predicted"] and len(table) == len(Y)
    counts = pd.crosstab(table["actual"], table["predicted"])
    metrics = binary_metrics(Y, P, 0.5)
    assert counts.loc["malignant", "malignant"] == metrics["tp"]
    assert counts.loc["benign", "malignant"] == metrics["fp"]


def test_figures_mark_the_chosen_operating_point():
    metrics = binary_metrics(Y, P, 0.5)
    roc = plots.roc_figure(plots.roc_table(Y, P), metrics, 0.5)
    marker = [line for line in roc.axes[0].lines if line.get_label() == "threshold 0.500"][0]
    assert marker.get_xdata()[0] == pytest.approx(1 - metrics["specificity"])
    assert marker.get_ydata()[0] == pytest.approx(metrics["recall"])
    pr = plots.pr_figure(plots.pr_table(Y, P), metrics, 0.5, prevalence=0.5)
    assert "threshold 0.500" in [line.get_label() for line in pr.axes[0].lines]
    sweep = plots.threshold_sweep_figure(sweep_table(Y, P, np.linspace(0, 1, 11)), 0.5, "default")
    assert [line.get_label() for line in sweep.axes[0].lines][:3] == ["recall", "precision", "specificity"]
    bins = reliability_bins(Y, P, 5)
    for figure in (plots.confusion_figure(metrics, 0.5), plots.reliability_figure({"before": bins, "after": bins})):
        assert isinstance(figure, Figure) and len(figure.axes) >= 1
