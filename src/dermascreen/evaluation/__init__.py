"""Evaluation: metrics (one numpy implementation), thresholds, bootstrap, calibration, reports."""

from dermascreen.evaluation.metrics import binary_metrics, multiclass_metrics

__all__ = ["binary_metrics", "multiclass_metrics"]
