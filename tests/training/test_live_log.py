"""Per-epoch metrics to DVCLive (``engines.LiveLog``), the files ``dvc exp show`` and ``dvc plots`` read."""

from __future__ import annotations

import json

import pandas as pd

from dermascreen.training import fit
from dermascreen.training.engines import LiveLog

from training_toys import BASE_CONFIG, NORMALIZATION, tiny_net


def test_every_epoch_of_every_run_is_logged_under_its_run(tmp_path, toy_train, toy_val):
    live = tmp_path / "dvclive" / "phase1"
    results = {run: fit(tiny_net(), toy_train, toy_val, {**BASE_CONFIG, "patience": 10}, None, NORMALIZATION,
                        live=LiveLog(live, run)) for run in ("A", "B")}
    summary = json.loads((live / "metrics.json").read_text())
    for run, result in results.items():
        last = result.history[-1]
        assert summary[run]["val_roc_auc"] == last["val_roc_auc"] and summary[run]["epoch"] == 3
        curve = pd.read_csv(live / "plots" / "metrics" / run / "val_loss.tsv", sep="\t")
        assert curve["step"].tolist() == [1, 2, 3]
        assert curve["val_loss"].tolist() == [row["val_loss"] for row in result.history]


def test_a_run_started_again_rewrites_its_curves_from_its_history(tmp_path, toy_train, toy_val):
    live, state = tmp_path / "dvclive", tmp_path / "state"
    for _ in range(2):  # the second fit returns the stored result of the finished run
        result = fit(tiny_net(), toy_train, toy_val, BASE_CONFIG, None, NORMALIZATION, checkpoint_dir=state,
                     live=LiveLog(live, "A"))
    curve = pd.read_csv(live / "plots" / "metrics" / "A" / "train_loss.tsv", sep="\t")
    assert curve["train_loss"].tolist() == [row["train_loss"] for row in result.history]
