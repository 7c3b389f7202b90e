"""A rejected data file never sticks, as a user meets it: `kedro run` and `dvc repro` on `tiny`.

Real processes in a fresh checkout, real files: a broken file (float images) is refused with a
final message naming it and the fix, then the corrected file is accepted; a changed
`DERMAMNIST_NPZ` replaces the copy in data/01_raw, also under DVC (`make all` runs
`python -m dermascreen.data.acquire ... --drop-replaced` before `dvc repro`, which cannot see the
variable). Under DVC the file is the out of its own stage, `raw_data`, which data_engineering reads.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from project_helpers import command_env, project_checkout, synthetic_raw

pytestmark = pytest.mark.slow
RAW = Path("data/01_raw/dermamnist_28.npz")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sources")
    arrays = synthetic_raw(seed=0)
    paths = {name: folder / f"{name}.npz" for name in ("broken", "good", "other")}
    np.savez(paths["broken"], **{**arrays, "train_images": arrays["train_images"].astype(np.float32)})
    np.savez(paths["good"], **arrays)
    np.savez(paths["other"], **synthetic_raw(seed=1))
    return paths


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return project_checkout(tmp_path_factory.mktemp("checkout") / "dermascreen")


def run(args: list[str], repo: Path, npz: Path) -> subprocess.CompletedProcess:
    """stdout and stderr in one stream, in the order the user sees them."""
    env = command_env(DERMAMNIST_NPZ=str(npz), PYTHONPATH=str(repo / "src"))
    return subprocess.run(args, cwd=repo, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)


def test_kedro_run_ends_with_the_problem_and_the_fix(repo, files):
    result = run(["kedro", "run", "--pipelines", "data_engineering", "--env", "tiny"], repo, files["broken"])
    assert result.returncode == 1
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith(f"dermascreen: DERMAMNIST_NPZ file refused: {files['broken']}: "
                           "train_images has dtype float32, expected uint8.")
    assert "Fix: set DERMAMNIST_NPZ to the DermaMNIST 28x28 .npz" in last
    assert "Traceback" not in result.stdout and "│" not in result.stdout  # no (rich) traceback
    assert not (repo / RAW).exists()


def test_dvc_repro_refuses_then_accepts_then_follows_a_changed_file(repo, files):
    def repro(npz: Path) -> subprocess.CompletedProcess:
        return run(["dvc", "repro", "data_engineering"], repo, npz)

    refused = repro(files["broken"])
    assert refused.returncode != 0 and f"DERMAMNIST_NPZ file refused: {files['broken']}" in refused.stdout
    assert not (repo / RAW).exists()

    accepted = repro(files["good"])
    assert accepted.returncode == 0, accepted.stdout[-3000:]
    assert (repo / RAW).read_bytes() == files["good"].read_bytes()

    # DVC decides from dvc.lock: on its own it keeps the old copy for a changed DERMAMNIST_NPZ ...
    assert "didn't change" in repro(files["other"]).stdout
    assert (repo / RAW).read_bytes() == files["good"].read_bytes()
    # ... so `make all` first drops a copy that differs from DERMAMNIST_NPZ, and DVC reruns.
    dropped = run(["python", "-m", "dermascreen.data.acquire", str(RAW), "--drop-replaced"], repo,
                  files["other"])
    assert dropped.returncode == 0 and "removing the copy" in dropped.stdout
    rerun = repro(files["other"])
    assert rerun.returncode == 0
    assert "Running stage 'raw_data'" in rerun.stdout and "Running stage 'data_engineering'" in rerun.stdout
    assert (repo / RAW).read_bytes() == files["other"].read_bytes()


def test_changing_data_engineering_code_does_not_acquire_the_file_again(repo, files):
    nodes = repo / "src" / "dermascreen" / "pipelines" / "data_engineering" / "nodes.py"
    nodes.write_text(nodes.read_text() + "\n# a change to the pipeline's code, not to acquisition\n")
    rerun = run(["dvc", "repro", "data_engineering"], repo, files["other"])
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert "Stage 'raw_data' didn't change" in rerun.stdout
    assert "Running stage 'raw_data'" not in rerun.stdout and "Running stage 'data_engineering'" in rerun.stdout
    assert (repo / RAW).read_bytes() == files["other"].read_bytes()
