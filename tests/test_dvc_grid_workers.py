"""The phase1 grid spread over workers (dvc.yaml's `phase1_run@<run>` stages, docs/training.md,
"Scaling"), on the tiny profile with real processes.

Two workers (two clones of one repository sharing a DVC cache, as two GPUs or two machines would)
train one run each at the same time; the collecting clone then restores the other worker's run from
DVC's run-cache instead of training it, and its leaderboard is the one the serial `kedro run
--pipelines phase1` writes. A grid configuration that params.yaml does not hold stops the selection
stage with the fix; once written, only the new run trains.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from project_helpers import command_env, project_checkout, real_npz_path

pytestmark = pytest.mark.slow
RUNS = ("CNN_v1_W0", "CNN_v1_W3")  # conf/tiny: phase1.runs x phase1.class_weights


def run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=command_env(), capture_output=True, text=True, timeout=900)
    if check:
        assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def clone(source: Path, target: Path) -> Path:
    """A worker: a clone of the repository, its data checked out of the shared cache."""
    run(["git", "clone", "-q", str(source), str(target)], source.parent)
    run(["dvc", "checkout", "--with-deps", "data_engineering"], target)
    return target


def commit(repo: Path, message: str) -> None:
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", message], repo)


@pytest.fixture(scope="module")
def workers(tmp_path_factory) -> dict[str, Path]:
    """Workers a and b after training one run each side by side, and a after `dvc repro phase1`."""
    npz = real_npz_path()
    if npz is None:
        pytest.skip("real DermaMNIST file absent: set DERMAMNIST_NPZ (see ../shared/data/SOURCES.md)")
    os.environ["DERMAMNIST_NPZ"] = str(npz)
    base = tmp_path_factory.mktemp("workers")
    a = project_checkout(base / "a")
    run(["dvc", "config", "cache.dir", str(base / "cache")], a)  # shared: committed in .dvc/config
    run(["dvc", "repro", "data_engineering"], a)  # what every worker starts from
    commit(a, "data")
    b = clone(a, base / "b")
    side_by_side = [subprocess.Popen(["dvc", "repro", f"phase1_run@{name}"], cwd=repo, env=command_env(), text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                    for repo, name in ((a, RUNS[0]), (b, RUNS[1]))]
    logs = [process.communicate(timeout=900)[0] for process in side_by_side]
    for process, log, name in zip(side_by_side, logs, RUNS):
        assert process.returncode == 0, log[-3000:]
        assert f"Running stage 'phase1_run@{name}'" in log
    collected = output(run(["dvc", "repro", "phase1"], a))
    return {"a": a, "b": b, "base": base, "collected": collected}


def test_the_collecting_worker_restores_the_other_run_instead_of_training_it(workers):
    collected = workers["collected"]
    assert f"Stage 'phase1_run@{RUNS[1]}' is cached - skipping run, checking out outputs" in collected
    assert "Running stage 'phase1_run@" not in collected
    assert "Running stage 'phase1':" in collected
    assert "up to date" in output(run(["dvc", "status", "phase1"], workers["a"]))


def test_two_workers_give_the_leaderboard_of_the_serial_run(workers):
    serial = clone(workers["a"], workers["base"] / "serial")
    run(["kedro", "run", "--pipelines", "phase1", "--env", "tiny"], serial)
    for name in ("data/08_reporting/phase1/leaderboard.csv", "data/08_reporting/phase1_metrics.json",
                 "data/07_model_output/phase1_best.json"):
        assert (workers["a"] / name).read_text() == (serial / name).read_text(), name
    for name in RUNS:
        summary = f"data/07_model_output/phase1/{name}/summary.json"
        assert (workers["a"] / summary).read_text() == (serial / summary).read_text(), summary


def test_a_grid_params_yaml_lacks_stops_the_selection_then_only_the_new_run_trains(workers):
    a = workers["a"]
    commit(a, "two runs")
    overrides = a / "conf" / "tiny" / "parameters_phase1.yml"
    overrides.write_text(overrides.read_text().replace("class_weights: [W0, W3]", "class_weights: [W0, W3, W5]"))
    stale = run(["dvc", "repro", "phase1"], a, check=False)
    assert stale.returncode != 0
    assert "phase1_runs: CNN_v1_W5 is configured but missing" in output(stale) and "make grid" in output(stale)
    run([sys.executable, "-m", "dermascreen.grid"], a)
    rerun = output(run(["dvc", "repro", "phase1"], a))
    assert "Running stage 'phase1_run@CNN_v1_W5'" in rerun and "Running stage 'phase1':" in rerun
    assert not any(f"Running stage 'phase1_run@{name}'" in rerun for name in RUNS)
