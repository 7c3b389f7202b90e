"""Training killed for real and started again loses nothing.

In a temporary checkout on the tiny profile (state saved every epoch, epochs of about a second):
a grid run's `kedro run` (the command of its DVC stage) killed with SIGKILL in the middle of an
epoch after its first checkpoint, then `dvc repro` of that stage; `dvc repro phase1` interrupted
with SIGINT (Ctrl-C) at the same point of the other run's stage, then `dvc repro phase1` again:
each start resumes from the last checkpoint, and the end has exactly the metrics and weights of an
uninterrupted run (CPU, same seed). One chain rather than two tests: each start of the tiny
project costs seconds of imports. The same for a pretraining method (MAE's node, killed with SIGKILL).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from project_helpers import project_checkout, real_npz_path, write_grid

pytestmark = pytest.mark.slow
PHASE1 = ["kedro", "run", "--env", "tiny", "--pipelines", "phase1"]
DVC_REPRO = ["dvc", "repro", "phase1"]
STATE_DIR = Path("data/06_models/phase1_state")
OUTPUTS = ("data/06_models/phase1", "data/07_model_output/phase1", "data/08_reporting/phase1",
           "data/08_reporting/phase1_metrics.json")
TIMES = ["train_time_s", "val_time_s"]


def environment(root: Path) -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(root / "src"), "DERMAMNIST_NPZ": str(real_npz_path()),
            "KEDRO_DISABLE_TELEMETRY": "1", "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "400"}  # log lines unwrapped


def run(args: list[str], root: Path) -> str:
    result = subprocess.run(args, cwd=root, env=environment(root), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def interrupted(args: list[str], root: Path, sig: signal.Signals, log: Path,
                state_dir: Path = STATE_DIR) -> tuple[Path, str]:
    """Start ``args`` and send ``sig`` to its process group as soon as a new training state is on
    disk under ``state_dir`` (a run's first epoch is over, its second under way: the callers assert
    that the log has epoch 1's line and not epoch 2's, so the signal landed mid-epoch); the new state
    file and the output."""
    before = set((root / state_dir).glob("*/training_state.pt"))
    with log.open("w") as out:
        # Its own group: a Ctrl-C reaches dvc and kedro. SIGINT as a terminal delivers it: a shell
        # starts background jobs (`pytest ... &`, `make test &`) with SIGINT ignored, every process
        # under them inherits that, and a run that ignores the signal ends as if never sent.
        process = subprocess.Popen(args, cwd=root, env=environment(root), stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, preexec_fn=default_sigint)
        try:
            deadline = time.monotonic() + 300
            while not (new := set((root / state_dir).glob("*/training_state.pt")) - before):
                assert process.poll() is None, f"{' '.join(args)} ended before a new checkpoint:\n{log.read_text()}"
                assert time.monotonic() < deadline, "no new checkpoint within 300 s"
                time.sleep(0.01)
            assert process.poll() is None, f"{' '.join(args)} ended before the signal:\n{log.read_text()}"
            os.killpg(process.pid, sig)
            process.wait(timeout=120)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    assert process.returncode != 0, f"{' '.join(args)} ended normally after {sig.name}:\n{log.read_text()[-3000:]}"
    return new.pop().relative_to(root), log.read_text()


def default_sigint() -> None:
    """In the child before it starts: SIGINT's default action, whatever the test runner inherited."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stages_run(log: str) -> list[str]:
    return re.findall(r"Running stage '([\w@]+)'", log)


def results(root: Path) -> dict:
    """Everything phase1 reports and selects: histories (without wall times), summaries, leaderboard,
    metrics, and the weights of every run."""
    out = {"leaderboard": pd.read_csv(root / "data/08_reporting/phase1/leaderboard.csv").to_dict("list"),
           "metrics": (root / "data/08_reporting/phase1_metrics.json").read_text()}
    for run_dir in sorted((root / "data/07_model_output/phase1").iterdir()):
        if run_dir.is_dir():
            out[run_dir.name] = {"history": pd.read_csv(run_dir / "history.csv").drop(columns=TIMES).to_dict("list"),
                                 "summary": (run_dir / "summary.json").read_text()}
            weights = torch.load(root / "data/06_models/phase1" / run_dir.name / "best.pt", weights_only=True)
            out[run_dir.name]["weights"] = {name: tensor.tolist() for name, tensor in weights["state_dict"].items()}
    return out


def clean(root: Path) -> None:
    """No training state and no phase1 output: what is there afterwards comes from the next run."""
    for name in (str(STATE_DIR), *OUTPUTS):
        path = root / name
        if path.is_dir():
            shutil.rmtree(path)
        path.unlink(missing_ok=True)


@pytest.fixture
def project(tmp_path_factory) -> Path:
    """A tiny-profile checkout whose phase1 epochs last about a second (100 batches)."""
    if real_npz_path() is None:
        pytest.skip("real DermaMNIST file absent: set DERMAMNIST_NPZ (see ../shared/data/SOURCES.md)")
    root = tmp_path_factory.mktemp("kill") / "dermascreen"
    project_checkout(root)
    overrides = root / "conf" / "tiny" / "globals.yml"
    config = yaml.safe_load(overrides.read_text())
    assert config["binary_training"]["checkpoint_every_s"] == 0  # a state after every epoch
    config["binary_training"].update(max_train_batches=100, epochs=2, patience=2)
    overrides.write_text(yaml.safe_dump(config))
    write_grid(root)  # the run stages' fingerprints of the shorter epochs
    return root


def test_killed_and_interrupted_runs_resume_and_end_as_an_uninterrupted_run(project, tmp_path):
    # The model input and the uninterrupted run in one start; not through dvc, whose run cache would
    # later restore these outputs instead of training. Meanwhile the `weights` stage, phase1's other
    # upstream stage, on the other core. DVC records the data file and the model input as the
    # outputs of their stages: `dvc repro phase1` below runs phase1 alone.
    with (tmp_path / "weights.log").open("w") as out:
        weights = subprocess.Popen(["dvc", "repro", "weights"], cwd=project, env=environment(project), stdout=out,
                                   stderr=subprocess.STDOUT)
        try:
            run(["kedro", "run", "--env", "tiny", "--pipelines", "data_engineering,phase1"], project)
        finally:
            assert weights.wait(timeout=600) == 0, (tmp_path / "weights.log").read_text()
    run(["dvc", "commit", "--force", "raw_data", "data_engineering"], project)
    uninterrupted = results(project)
    clean(project)

    # A grid run's `kedro run` (its DVC stage's command) killed (SIGKILL) in its second epoch
    first_name, second_name = yaml.safe_load((project / "params.yaml").read_text())["phase1_runs"]
    first_run, second_run = f"phase1_run@{first_name}", f"phase1_run@{second_name}"
    first, log = interrupted(PHASE1 + ["--namespaces", f"phase1.{first_name}"], project,
                             signal.SIGKILL, tmp_path / "kedro.log")
    assert log.count("epoch 1: train_loss") == 1 and "epoch 2: train_loss" not in log

    # `dvc repro` of its stage resumes it and finishes it
    log = run(["dvc", "repro", first_run], project)
    assert f"resuming from {first} after epoch 1" in log and stages_run(log) == [first_run]

    # `dvc repro phase1` trains the other run and is interrupted (Ctrl-C) in its second epoch
    second, log = interrupted(DVC_REPRO, project, signal.SIGINT, tmp_path / "dvc.log")
    assert second.parent.name == second_name and stages_run(log) == [second_run]
    assert log.count("epoch 1: train_loss") == 1 and "epoch 2: train_loss" not in log

    # `dvc repro phase1` again: the second run resumes, then the selection; the end is the uninterrupted run's
    log = run(DVC_REPRO, project)
    assert stages_run(log) == [second_run, "phase1"] and f"resuming from {second} after epoch 1" in log
    assert results(project) == uninterrupted


PRETRAIN_MAE = ["kedro", "run", "--env", "tiny", "--pipelines", "pretraining", "--nodes", "pretraining.mae.pretrain"]
PRETRAINING_STATE = Path("data/06_models/pretraining_state")


def pretraining_results(root: Path) -> dict:
    """MAE's pretraining history (without wall times) and encoder weights."""
    history = pd.read_csv(root / "data/08_reporting/pretraining/mae/pretraining_history.csv")
    encoder = torch.load(root / "data/06_models/pretraining/mae/encoder.pt", weights_only=True)
    return {"history": history.drop(columns=["seconds", "images_per_s"]).to_dict("list"),
            "weights": {name: tensor.tolist() for name, tensor in encoder["state_dict"].items()}}


def test_a_killed_pretraining_resumes_and_ends_as_an_uninterrupted_run(tmp_path_factory, tmp_path):
    """MAE's pretraining node, 2 epochs of about a second, SIGKILLed in its second epoch."""
    if real_npz_path() is None:
        pytest.skip("real DermaMNIST file absent: set DERMAMNIST_NPZ (see ../shared/data/SOURCES.md)")
    root = project_checkout(tmp_path_factory.mktemp("kill_pretraining") / "dermascreen")
    overrides = root / "conf" / "tiny" / "parameters_pretraining.yml"
    config = yaml.safe_load(overrides.read_text())
    assert config["pretraining"]["shared"]["pretrain"]["checkpoint_every_s"] == 0  # a state after every epoch
    config["pretraining"]["shared"]["pretrain"].update(epochs=2, max_batches=150)
    overrides.write_text(yaml.safe_dump(config))
    # The model input and the uninterrupted run in one start.
    run(["kedro", "run", "--env", "tiny", "--to-nodes", "pretraining.mae.pretrain"], root)
    uninterrupted = pretraining_results(root)
    shutil.rmtree(root / PRETRAINING_STATE)

    state, log = interrupted(PRETRAIN_MAE, root, signal.SIGKILL, tmp_path / "kedro.log", PRETRAINING_STATE)
    assert log.count("pretraining epoch 1:") == 1 and "pretraining epoch 2:" not in log

    log = run(PRETRAIN_MAE, root)
    assert f"resuming from {state} after epoch 1" in log and "pretraining epoch 1:" not in log
    assert pretraining_results(root) == uninterrupted
