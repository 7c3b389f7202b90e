"""`dvc repro` on the tiny profile in a temporary copy of the repository.

Checks the claims of dvc.yaml: everything rebuilds from a clean checkout, a second run does
nothing, changing one phase2 parameter (conf/ and `make grid`) with a phase3 one (`dvc exp run -S`)
reruns phase2 and phase3 only, metrics
are there, and `dvc push` / `dvc pull` round-trip the data and models through a local remote.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from project_helpers import command_env, project_checkout, real_npz_path

pytestmark = pytest.mark.slow
STAGES = ("weights", "raw_data", "data_engineering", "pretraining", "phase1", "phase2", "phase3")


def run(args: list[str], cwd: Path) -> str:
    result = subprocess.run(args, cwd=cwd, env=command_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def ran(output: str) -> set[str]:
    return {stage for stage in STAGES if f"Running stage '{stage}'" in output}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A fresh checkout of the working tree (tracked and untracked-not-ignored files) on `tiny`."""
    if real_npz_path() is None:
        pytest.skip("real DermaMNIST file absent: set DERMAMNIST_NPZ (see ../shared/data/SOURCES.md)")
    os.environ["DERMAMNIST_NPZ"] = str(real_npz_path())
    return project_checkout(tmp_path_factory.mktemp("checkout") / "dermascreen")


@pytest.fixture(scope="module")
def first_repro(repo) -> str:
    return run(["dvc", "repro"], repo)


def test_repro_from_a_clean_checkout_runs_every_stage(repo, first_repro):
    assert ran(first_repro) == set(STAGES)
    # tiny trains CNNs only: the weights stage needs no download and writes an empty manifest
    assert json.loads((repo / "data" / "01_raw" / "weights" / "manifest.json").read_text()) == {"weights": []}
    assert (repo / "data" / "08_reporting" / "final_report.html").is_file()
    assert (repo / "data" / "06_models" / "phase2_best.pt").is_file()


def test_second_repro_does_nothing_and_status_is_clean(repo, first_repro):
    assert ran(run(["dvc", "repro"], repo)) == set()
    assert "up to date" in run(["dvc", "status"], repo)


def test_metrics_show_the_final_test_metrics(repo, first_repro):
    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], repo))
    files = next(iter(metrics.values()))["data"]
    final = files["data/08_reporting/phase3_metrics.json"]["data"]
    assert 0.0 <= final["test_recall"] <= 1.0 and "test_roc_auc_low" in final
    assert "val_recall" in files["data/08_reporting/phase2_metrics.json"]["data"]


def test_push_and_pull_round_trip_data_and_models(repo, first_repro, tmp_path):
    run(["dvc", "remote", "add", "-f", "-d", "scratch", str(tmp_path / "remote")], repo)
    run(["dvc", "push"], repo)
    model = repo / "data" / "06_models" / "phase2_best.pt"
    expected = model.read_bytes()
    shutil.rmtree(repo / "data" / "06_models")
    shutil.rmtree(repo / ".dvc" / "cache")
    run(["dvc", "pull"], repo)
    assert model.read_bytes() == expected
    assert "up to date" in run(["dvc", "status"], repo)


def test_experiment_with_a_changed_phase2_parameter_reruns_phase2_and_phase3_only(repo, first_repro):
    """One rerun of phase2 and phase3 (the slowest step after the first repro) for every claim: a
    grid parameter changed in conf/ and written into params.yaml's grid (`make grid`; `-S` on conf/
    alone would stop at the grid check) and a parameter outside the grids set by `-S`, `dvc exp run`
    trains LowLR's seed runs alone again; the experiment is then compared with the baseline."""
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "baseline"], repo)
    overrides = repo / "conf" / "tiny" / "parameters_phase2.yml"
    overrides.write_text(overrides.read_text() + "  strategies:\n    LowLR: {lr: 0.0003}\n")
    run([sys.executable, "-m", "dermascreen.grid"], repo)  # params.yaml: LowLR's runs changed
    output = run(["dvc", "exp", "run", "-n", "lowlr3", "-S", "conf/tiny/parameters_phase3.yml:phase3.n_bootstrap=300"],
                 repo)
    assert ran(output) == {"phase2", "phase3"}
    assert {line for line in output.splitlines() if line.startswith("Running stage 'phase2_run@")} == {
        f"Running stage 'phase2_run@LowLR_seed{seed}':" for seed in (42, 43)}  # tiny's seeds
    assert "up to date" in run(["dvc", "status"], repo)
    table = run(["dvc", "exp", "show", "--csv"], repo)
    assert "lowlr3" in table and "phase2.strategies.LowLR.lr" in table and "test_recall" in table
    assert "phase3.n_bootstrap" in table  # the -S parameter, which phase3 used:
    assert '"n_bootstrap": 300' in (repo / "data" / "08_reporting" / "final_report.md").read_text()
    # DVCLive: every run's last epoch in `dvc exp show`, its learning curves in `dvc plots diff`
    experiment = find_named(json.loads(run(["dvc", "exp", "show", "--json"], repo)), "lowlr3")
    metrics = experiment["data"]["metrics"]
    runs = {f"{strategy}_seed{seed}" for strategy in ("Freeze10", "LowLR") for seed in (42, 43)}  # tiny's seeds
    live = {run: metrics[f"dvclive/phase2/{run}/metrics.json"]["data"][run] for run in runs}
    assert 0.0 <= live["LowLR_seed42"]["val_roc_auc"] <= 1.0
    assert live["LowLR_seed42"]["epoch"] == len(pd.read_csv(repo / "data/07_model_output/phase2/LowLR_seed42/history.csv"))
    assert {name for name in metrics if name.startswith("dvclive/phase1/")} == {
        f"dvclive/phase1/{run}/metrics.json" for run in ("CNN_v1_W0", "CNN_v1_W3")}
    plots = json.loads(run(["dvc", "plots", "diff", "HEAD", "lowlr3", "--json"], repo))["data"]
    curve = "dvclive/phase2/LowLR_seed42/plots/metrics/LowLR_seed42/val_loss.tsv"
    revisions = {point["rev"] for plot in plots[curve] for point in plot["content"]["data"]["values"]}
    assert revisions == {"HEAD", "lowlr3"}


def find_named(node, name: str) -> dict:
    """The entry (with its ``data``) called ``name`` anywhere in `dvc exp show --json`'s nested lists and dicts."""
    if isinstance(node, dict):
        if node.get("name") == name and "data" in node:
            return node
        node = list(node.values())
    if isinstance(node, list):
        for child in node:
            found = find_named(child, name)
            if found is not None:
                return found
    return None
