"""phase1 then phase2 on the tiny profile through Kedro's runner (real training, seconds)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.runner import SequentialRunner

from project_helpers import load_config, project_catalog
from dermascreen.models import build_model
from dermascreen.models.vit import ViTEncoder, encoder_checkpoint
from dermascreen.pipelines.phase1.pipeline import build_grid as phase1_grid
from dermascreen.pipelines.phase2.pipeline import build_grid as phase2_grid
from dermascreen.training.device import cpu_name

pytestmark = pytest.mark.slow


def split(n, seed):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 7
    images = rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)
    images[labels == 4] //= 2  # a learnable difference for one malignant class
    return {"images": images, "labels": labels, "binary": np.isin(labels, [0, 1, 4]).astype(np.int64)}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    params = load_config("tiny", "parameters")
    for phase in ("phase1", "phase2"):
        params[phase]["state_dir"] = str(root / "data" / "06_models" / f"{phase}_state")
        params[phase]["dvclive_dir"] = str(root / "dvclive" / phase)
    catalog = project_catalog(root, env="tiny", parameters=params)
    catalog.save("train_set", split(140, 0))
    catalog.save("val_set", split(70, 1))
    catalog.save("normalization", {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]})
    catalog.save("class_weights", {"W0": [1.0, 1.0], "W3": [1.0, 3.0]})
    catalog.save("data_provenance", {"path": "synthetic.npz", "md5": "0", "official": False})
    runs = params["phase1"]["runs"], params["phase1"]["class_weights"], params["phase1"]["architectures"]
    SequentialRunner().run(phase1_grid(*runs), catalog)
    SequentialRunner().run(phase2_grid(params["phase2"]["runs"], params["phase2"]["seeds"]), catalog)
    return root / "data", catalog, params


def test_phase1_writes_every_run_and_the_selection(project):
    data, catalog, params = project
    board = pd.read_csv(data / "08_reporting" / "phase1" / "leaderboard.csv")
    expected = {f"{a}_{w}" for a in params["phase1"]["runs"] for w in params["phase1"]["class_weights"]}
    assert set(board["run"]) == expected
    for run in expected:
        assert (data / "06_models" / "phase1" / run / "best.pt").is_file()
        history = pd.read_csv(data / "07_model_output" / "phase1" / run / "history.csv")
        assert history["epoch"].tolist() == [1, 2]
    best = json.loads((data / "07_model_output" / "phase1_best.json").read_text())
    assert best["run"] == board.loc[board["rank"] == 1, "run"].item()
    markdown = (data / "08_reporting" / "phase1" / "leaderboard.md").read_text()
    assert "phase1 --env tiny" in markdown
    used = {"device": "cpu", "precision": "fp32", "device_name": cpu_name()}  # what tiny asks for
    assert best["hardware"] == used and catalog.load("phase1_best_model")["hardware"] == used
    assert f"Trained on (device (its model), precision): cpu ({cpu_name()}), fp32." in markdown


def test_checkpoint_rebuilds_the_model_from_its_config(project):
    data, catalog, _ = project
    checkpoint = catalog.load("phase1_best_model")
    model = build_model(checkpoint["config"])
    model.load_state_dict(checkpoint["state_dict"])
    assert checkpoint["config"]["weights"] == "none"
    assert checkpoint["run"] == catalog.load("phase1_best")["run"]


def test_phase2_trains_each_strategy_per_seed_from_the_phase1_winner(project):
    data, catalog, params = project
    best = catalog.load("phase1_best")
    seeds = params["phase2"]["seeds"]
    assert len(seeds) >= 2
    for strategy in params["phase2"]["runs"]:
        for seed in seeds:
            summary = catalog.load(f"phase2.{strategy}_seed{seed}.summary")
            assert summary["init_weights"] == f"checkpoint of run {best['run']}"
            assert summary["training"]["seed"] == seed and summary["class_weights_name"] == best["class_weights_name"]
            # the seed is part of the run key: its own resumable state and checkpoint
            assert (data / "06_models" / "phase2_state" / f"{strategy}_seed{seed}").is_dir()
            assert (data / "06_models" / "phase2" / f"{strategy}_seed{seed}" / "best.pt").is_file()
    assert catalog.load(f"phase2.Freeze10_seed{seeds[0]}.summary")["model"]["unfreeze"] == 10
    first, second = (catalog.load(f"phase2.Freeze10_seed{seed}.checkpoint")["state_dict"] for seed in seeds[:2])
    assert not all(torch.equal(first[k], second[k]) for k in first)  # the seed changes the run


def test_phase2_leaderboard_ranks_strategies_on_the_mean_over_seeds(project):
    data, catalog, params = project
    seeds = params["phase2"]["seeds"]
    board = pd.read_csv(data / "08_reporting" / "phase2" / "leaderboard.csv")
    assert set(board["run"]) == set(params["phase2"]["runs"])
    for _, row in board.iterrows():
        values = [catalog.load(f"phase2.{row['run']}_seed{seed}.summary")["val_metrics"]["roc_auc"] for seed in seeds]
        assert row["val_roc_auc_mean"] == pytest.approx(np.mean(values))
        assert row["val_roc_auc_std"] == pytest.approx(np.std(values, ddof=1))
    assert board["eligible"].is_monotonic_decreasing  # eligible strategies first, then by the mean criterion
    assert board.loc[board["eligible"], "val_spec_at_recall_mean"].is_monotonic_decreasing
    best = catalog.load("phase2_best")
    assert best["run"] == board["run"].iloc[0] and best["seeds"] == seeds
    metrics = catalog.load("phase2_metrics")
    assert metrics["val_roc_auc"] == pytest.approx(board["val_roc_auc_mean"].iloc[0])
    assert metrics["val_roc_auc_std"] == pytest.approx(board["val_roc_auc_std"].iloc[0])
    assert " ± " in (data / "08_reporting" / "phase2" / "leaderboard.md").read_text()


def test_phase2_exports_seed_ensembles_of_the_winner_and_the_other_finalists(project):
    data, catalog, params = project
    board = pd.read_csv(data / "08_reporting" / "phase2" / "leaderboard.csv")
    seeds = params["phase2"]["seeds"]
    winner = catalog.load("phase2_best_model")
    alternatives = catalog.load("phase2_alternatives")
    finalists = board.loc[board["eligible"], "run"].tolist()
    assert winner["run"] == finalists[0] and list(alternatives) == finalists[1:]
    for strategy, ensemble in [(winner["run"], winner), *alternatives.items()]:
        assert [m["seed"] for m in ensemble["members"]] == seeds
        for i, seed in enumerate(seeds):
            member = catalog.load(f"phase2.{strategy}_seed{seed}.checkpoint")["state_dict"]
            assert all(torch.equal(ensemble["state_dict"][f"members.{i}.{k}"], member[k]) for k in member)
        assert len(ensemble["state_dict"]) == len(seeds) * len(member)


def test_rerun_reuses_finished_training_state(project):
    data, catalog, params = project
    before = catalog.load("phase1.CNN_v1_W0.checkpoint")["state_dict"]
    grid = phase1_grid(["CNN_v1"], ["W0"], params["phase1"]["architectures"])
    SequentialRunner().run(grid.only_nodes_with_namespaces(["phase1.CNN_v1_W0"]), catalog)
    after = catalog.load("phase1.CNN_v1_W0.checkpoint")["state_dict"]
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_run_alone_reproduces_the_same_run_inside_the_grid(project, tmp_path):
    _, catalog, params = project
    alone = project_catalog(tmp_path, env="tiny", parameters={
        **params, "phase1": {**params["phase1"], "state_dir": str(tmp_path / "state")}})
    for name in ("train_set", "val_set", "normalization", "class_weights", "data_provenance"):
        alone.save(name, catalog.load(name))
    last = f"{params['phase1']['runs'][-1]}_{params['phase1']['class_weights'][-1]}"
    SequentialRunner().run(phase1_grid(params["phase1"]["runs"], params["phase1"]["class_weights"],
                                       params["phase1"]["architectures"])
                           .only_nodes_with_namespaces([f"phase1.{last}"]), alone)
    expected = catalog.load(f"phase1.{last}.checkpoint")["state_dict"]
    got = alone.load(f"phase1.{last}.checkpoint")["state_dict"]
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_a_vit_run_starts_from_its_pretraining_encoder(project, tmp_path):
    _, catalog, params = project
    encoder = ViTEncoder(img_size=32, patch_size=4, embed_dim=16, depth=1, num_heads=2)
    architectures = {"ViT_MAE": {"model": {"arch": "vit", "weights": "mae", "dropout": 0.1},
                                 "lr": 0.001, "batch_size": 32}}
    vit = project_catalog(tmp_path, env="tiny", parameters={
        **params, "phase1": {**params["phase1"], "architectures": architectures,
                             "state_dir": str(tmp_path / "state")}})
    for name in ("train_set", "val_set", "normalization", "class_weights", "data_provenance"):
        vit.save(name, catalog.load(name))
    vit.save("pretraining.mae.encoder", encoder_checkpoint(encoder, {"embed_dim": 16, "depth": 1, "num_heads": 2}))
    grid = phase1_grid(["ViT_MAE"], ["W0"], architectures)
    SequentialRunner().run(grid.only_nodes_with_namespaces(["phase1.ViT_MAE_W0"]), vit)
    assert vit.load("phase1.ViT_MAE_W0.summary")["init_weights"] == "pretraining.mae.encoder"
    checkpoint = vit.load("phase1.ViT_MAE_W0.checkpoint")
    model = build_model(checkpoint["config"])  # rebuilds with the encoder's sizes, no file needed
    model.load_state_dict(checkpoint["state_dict"])
    assert model.encoder.patch_embed.out_channels == 16
