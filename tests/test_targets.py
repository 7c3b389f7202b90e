"""The targets table reads the metrics files and says which target is met."""

from __future__ import annotations

import json

from dermascreen.targets import summary


def test_summary_reads_metrics_and_marks_targets(tmp_path):
    (tmp_path / "phase3_metrics.json").write_text(json.dumps(
        {"test_roc_auc": 0.915, "test_recall": 0.91, "test_specificity": 0.70}))
    (tmp_path / "pretraining_metrics.json").write_text(json.dumps({
        "vit": {"accuracy_mean": 0.80, "balanced_accuracy_mean": 0.60},  # not MAE-family: never the best
        "mae": {"accuracy_mean": 0.745, "balanced_accuracy_mean": 0.40},
        "mlo_mae": {"accuracy_mean": 0.73, "balanced_accuracy_mean": 0.47}}))

    rows = {line.split(" | ")[0].lstrip("| "): line for line in summary(tmp_path, wall_minutes=50).splitlines()}

    assert "| 0.915 | yes |" in rows["binary test ROC AUC"]
    assert "recall 0.910, specificity 0.700 | no |" in rows["binary test operating point"]
    assert "0.745 (mae, mean of seeds) | yes |" in rows["7-class accuracy, best MAE-family method"]
    assert "0.470 (mlo_mae, mean of seeds) | yes |" in rows["7-class balanced accuracy, best MAE-family method"]
    assert "| not measured | - |" in rows["7-class accuracy, supervised CNN reference"]
    assert "| 50.0 min | no |" in rows["wall time of the run (set-up excluded)"]


def test_summary_without_metrics_files_says_not_measured(tmp_path):
    assert summary(tmp_path).count("not measured") == 5
