"""phase1/phase2 grids: structure, ranking and selection (training itself: test_grid_runs.py)."""

import numpy as np
import pytest

from dermascreen.pipelines.phase1.pipeline import build_grid as phase1_grid
from project_helpers import load_config
from dermascreen.pipelines.phase2.nodes import strategy_spec
from dermascreen.pipelines.phase2.pipeline import build_grid as phase2_grid
from dermascreen.evaluation.metrics import binary_metrics
from dermascreen.pipelines.runs import (best_metrics, export_selected, leaderboard_markdown, rank_runs, rank_strategies, select_best,
                                        select_best_strategy)

SELECTION = {"metric": "recall", "min_specificity": 0.5, "tie_breaker": "roc_auc"}
ARCHITECTURES = load_config("base", "parameters")["phase1"]["architectures"]


def summary(run, recall, specificity, roc_auc=0.8, arch="cnn", weights="W0", spec_at_recall=0.6, best_epoch=3,
            seed=42):
    metrics = {"recall": recall, "specificity": specificity, "roc_auc": roc_auc, "precision": 0.5,
               "f1": 0.5, "f2": 0.5, "pr_auc": 0.5, "accuracy": 0.7, "spec_at_recall": spec_at_recall}
    return {"run": run, "model": {"arch": arch}, "class_weights_name": weights, "best_epoch": best_epoch,
            "epochs_run": 5, "val_metrics": metrics, "training": {"seed": seed},
            "hardware": {"device": "cuda", "device_name": "NVIDIA H200", "precision": "bf16"}}


def scored_summary(run, y, p):
    return {**summary(run, 0, 0), "val_metrics": {**binary_metrics(y, p), "loss": 0.5}}


def test_phase1_grid_is_architectures_times_class_weights():
    pipe = phase1_grid(["CNN_v1", "ResNet_v1"], ["W0", "W3", "W5"], ARCHITECTURES)
    namespaces = {n.namespace for n in pipe.nodes if n.namespace}
    assert namespaces == {f"phase1.{a}_{w}" for a in ("CNN_v1", "ResNet_v1") for w in ("W0", "W3", "W5")}
    assert "phase1.ResNet_v1_W3.checkpoint" in pipe.all_outputs()
    assert {"train_set", "val_set", "normalization", "class_weights", "data_provenance"} <= pipe.inputs()
    assert "test_set" not in pipe.all_inputs()
    assert "params:phase1.architectures.ResNet_v1" in pipe.inputs()
    assert {"phase1_best", "phase1_best_model", "phase1_leaderboard"} <= pipe.all_outputs()
    assert "phase1_alternatives" not in pipe.all_outputs()  # phase3 compares with phase1's winner only


def test_one_run_can_be_selected_alone_by_namespace():
    pipe = phase1_grid(["CNN_v1", "CNN_v2"], ["W0", "W3"], ARCHITECTURES)
    alone = pipe.only_nodes_with_namespaces(["phase1.CNN_v2_W3"])
    assert {n.name for n in alone.nodes} == {"phase1.CNN_v2_W3.train", "phase1.CNN_v2_W3.plot_learning_curve"}


def test_a_vit_run_takes_its_pretraining_encoder_as_input():
    pipe = phase1_grid(["CNN_v1", "ViT_MLO_MAE"], ["W3"], ARCHITECTURES)
    train = {n.name: n for n in pipe.nodes}
    assert "pretraining.mlo_mae.encoder" in train["phase1.ViT_MLO_MAE_W3.train"].inputs
    assert not any(i.startswith("pretraining.") for i in train["phase1.CNN_v1_W3.train"].inputs)


def test_phase2_runs_every_strategy_once_per_seed_from_the_phase1_winner():
    pipe = phase2_grid(["Freeze10", "LowLR"], [42, 7])
    assert {"phase1_best", "phase1_best_model"} <= pipe.inputs()
    assert {n.namespace for n in pipe.nodes if n.namespace} == {
        "phase2.Freeze10_seed42", "phase2.Freeze10_seed7", "phase2.LowLR_seed42", "phase2.LowLR_seed7"}
    assert "phase2_alternatives" in pipe.all_outputs()
    assert "test_set" not in pipe.all_inputs()


@pytest.mark.parametrize("seeds", [[], [1, 1], 3, [1.5]])
def test_bad_seeds_name_the_parameter(seeds):
    with pytest.raises(ValueError, match="phase2.seeds: .* non-empty list of distinct integer seeds"):
        phase2_grid(["Freeze10"], seeds)


@pytest.mark.parametrize("profile, n_seeds", [("base", 3), ("quick", 3), ("tiny", 2)])
def test_profiles_train_each_strategy_with_several_seeds(profile, n_seeds):
    assert len(load_config(profile, "parameters")["phase2"]["seeds"]) == n_seeds


def seeded(strategy, values, **kwargs):
    """One summary per seed of a strategy, ``values`` = [(recall, specificity, spec_at_recall), ...]."""
    return {f"{strategy}_seed{k}": summary(f"{strategy}_seed{k}", r, s, spec_at_recall=sar, seed=k, **kwargs)
            for k, (r, s, sar) in enumerate(values)}


def test_strategies_rank_on_the_mean_over_seeds_with_std_columns():
    # "lucky" has the best single seed (0.9) but the lower mean; a seed that fails the guard disqualifies "flaky"
    summaries = {**seeded("lucky", [(0.9, 0.8, 0.9), (0.9, 0.8, 0.5), (0.9, 0.8, 0.55)]),
                 **seeded("steady", [(0.8, 0.7, 0.7), (0.8, 0.7, 0.7), (0.8, 0.7, 0.72)]),
                 **seeded("flaky", [(0.9, 0.9, 0.95), (0.9, 0.9, 0.95), (0.9, 0.9, 0.95)])}
    summaries["flaky_seed1"]["best_epoch"] = None
    members = {s: [f"{s}_seed{k}" for k in range(3)] for s in ("lucky", "steady", "flaky")}
    board = rank_strategies({**SELECTION, "metric": "spec_at_recall"}, members=members, **summaries)
    assert board["run"].tolist() == ["steady", "lucky", "flaky"]
    assert board["eligible"].tolist() == [True, True, False]
    assert board.loc[1, "val_spec_at_recall_mean"] == pytest.approx(np.mean([0.9, 0.5, 0.55]))
    assert board.loc[1, "val_spec_at_recall_std"] == pytest.approx(np.std([0.9, 0.5, 0.55], ddof=1))
    assert board.loc[0, "seeds"] == "0 1 2" and board.loc[2, "best_epoch"] == "3/-/3"
    assert {f"val_{m}_{s}" for m in ("recall", "roc_auc") for s in ("mean", "std")} <= set(board.columns)
    best = select_best_strategy(board, members=members, **summaries)
    assert best["run"] == "steady" and best["seeds"] == [0, 1, 2] and list(best["members"]) == members["steady"]
    assert best["val_metrics"]["spec_at_recall"] == pytest.approx(np.mean([0.7, 0.7, 0.72]))
    flat = best_metrics(best)
    assert flat["val_spec_at_recall_std"] == pytest.approx(np.std([0.7, 0.7, 0.72], ddof=1))
    assert flat["val_recall"] == pytest.approx(0.8) and flat["val_recall_std"] == pytest.approx(0.0, abs=1e-12)
    text = leaderboard_markdown(board, SELECTION, {"path": "d.npz", "official": False, "md5": "m"}, "quick",
                                phase="phase2")
    assert "| 1 | steady | W0 | True | 0 1 2 | 0.7067 ± 0.0115 | 0.8000 ± 0.0000 |" in text


def test_no_strategy_with_every_seed_eligible_is_an_error():
    summaries = seeded("a", [(1.0, 0.1, 0.1), (1.0, 0.1, 0.9)])
    members = {"a": ["a_seed0", "a_seed1"]}
    board = rank_strategies({**SELECTION, "metric": "spec_at_recall"}, members=members, **summaries)
    with pytest.raises(ValueError, match="no strategy had every seed run reach the minimum validation specificity"):
        select_best_strategy(board, members=members, **summaries)


def test_strategy_spec_overrides_only_what_the_strategy_changes():
    best = {"model": {"arch": "resnet50", "unfreeze": 0, "dropout": 0.5, "dense": 256},
            "training": {"lr": 1e-3, "batch_size": 64}, "class_weights_name": "W3"}
    spec = strategy_spec(best, {"model": {"unfreeze": "all", "dropout": 0.7}}, "HighDropout")
    assert spec["model"] == {"arch": "resnet50", "unfreeze": "all", "dropout": 0.7, "dense": 256}
    assert (spec["lr"], spec["batch_size"], spec["class_weights"]) == (1e-3, 64, "W3")
    assert strategy_spec(best, {"lr": 5e-5}, "LowLR")["lr"] == 5e-5


def test_ranking_puts_guarded_runs_last_and_breaks_ties():
    summaries = {
        "all_malignant": summary("all_malignant", recall=1.0, specificity=0.0),
        "good": summary("good", recall=0.8, specificity=0.7, roc_auc=0.85),
        "good_tie": summary("good_tie", recall=0.8, specificity=0.75, roc_auc=0.90),
        "weak": summary("weak", recall=0.5, specificity=0.9),
    }
    board = rank_runs(SELECTION, **summaries)
    assert board["run"].tolist() == ["good_tie", "good", "weak", "all_malignant"]
    assert board["rank"].tolist() == [1, 2, 3, 4]
    assert board["eligible"].tolist() == [True, True, True, False]
    assert select_best(board, **summaries)["run"] == "good_tie"
    checkpoints = {r: {"run": r} for r in summaries}
    assert export_selected(board, **checkpoints)["run"] == "good_tie"


def test_spec_at_recall_and_recall_at_half_select_different_runs():
    # 10 malignant, 90 benign: one run just at the guard with recall 1 at 0.5 and AUC 0.5, one that
    # reaches recall 0.9 without flagging a benign lesion but has recall 0.3 at 0.5
    y = np.r_[np.ones(10, dtype=int), np.zeros(90, dtype=int)]
    summaries = {
        "barely_guarded": scored_summary("barely_guarded", y, np.r_[np.full(10, 0.6), np.full(45, 0.7), np.full(45, 0.3)]),
        "separating": scored_summary("separating", y, np.r_[np.full(3, 0.55), np.full(6, 0.45), 0.2, np.full(90, 0.3)]),
    }
    by_recall = rank_runs(SELECTION, **summaries)
    by_spec = rank_runs({**SELECTION, "metric": "spec_at_recall"}, **summaries)

    assert select_best(by_recall, **summaries)["run"] == "barely_guarded"
    assert select_best(by_spec, **summaries)["run"] == "separating"
    assert by_spec["eligible"].tolist() == [True, True]


def test_a_run_without_a_guarded_epoch_is_never_eligible():
    summaries = {"never_guarded": summary("never_guarded", 0.9, 0.9, best_epoch=None, spec_at_recall=0.9),
                 "low_operating_spec": summary("low_operating_spec", 0.9, 0.9, spec_at_recall=0.3),
                 "ok": summary("ok", 0.5, 0.6, spec_at_recall=0.6)}
    board = rank_runs({**SELECTION, "metric": "spec_at_recall"}, **summaries)
    assert board["run"].tolist() == ["ok", "never_guarded", "low_operating_spec"]
    assert board["eligible"].tolist() == [True, False, False]


def test_an_unknown_selection_metric_names_the_parameter():
    with pytest.raises(ValueError, match="selection.metric: 'auc'"):
        rank_runs({**SELECTION, "metric": "auc"}, a=summary("a", 0.7, 0.8))


def test_no_eligible_run_is_an_error():
    summaries = {"a": summary("a", 1.0, 0.1), "b": summary("b", 1.0, 0.2)}
    with pytest.raises(ValueError, match="no run reached the minimum validation specificity"):
        select_best(rank_runs(SELECTION, **summaries), **summaries)


def test_leaderboard_markdown_names_command_and_data():
    board = rank_runs(SELECTION, a=summary("a", 0.7, 0.8))
    text = leaderboard_markdown(board, SELECTION, {"path": "d.npz", "official": False, "md5": "m"},
                                "quick", phase="phase1")
    assert "`kedro run --pipelines phase1 --env quick`" in text and "non-official copy" in text and "md5 `m`" in text
    assert "| 1 | a | W0 | True | 0.6000 | 0.7000 | 0.8000 |" in text
    assert "Trained on (device (its model), precision): cuda (NVIDIA H200), bf16." in text
