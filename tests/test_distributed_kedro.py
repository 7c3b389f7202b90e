"""`torchrun ... -m dermascreen` (docs/training.md, "Distributed training"): phase1 of the tiny
profile trained data-parallel by two CPU processes (gloo) in a temporary checkout, against one
process; and the hook that lets rank 0 alone write the pipeline's outputs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import ignite.distributed as idist
import pandas as pd
import pytest
from kedro.io import MemoryDataset

from dermascreen.hooks import DistributedHook
from dermascreen.pipelines.phase1.pipeline import build_grid
from project_helpers import command_env, load_config, project_catalog, project_checkout, real_npz_path

pytestmark = pytest.mark.slow
PHASE1 = ["-m", "dermascreen", "--env", "tiny", "--pipelines", "phase1"]
OUTPUTS = ("data/06_models/phase1", "data/06_models/phase1_state", "data/07_model_output/phase1",
           "data/08_reporting/phase1")
# Tiny runs (2 epochs of 3 batches) are near chance, and 2 processes draw other augmentations,
# dropout masks and BatchNorm batches than 1 (tests/training/test_distributed.py shows the
# same model up to float sums when nothing depends on them): measured |difference| 0.018 ROC AUC, 0.012 PR AUC.
TOLERANCE = 0.05


def run(args: list[str], root: Path) -> None:
    env = command_env(PYTHONPATH=str(root / "src"), DERMAMNIST_NPZ=str(real_npz_path()))
    result = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def leaderboards(tmp_path_factory) -> dict[str, pd.DataFrame]:
    if real_npz_path() is None:
        pytest.skip("real DermaMNIST file absent: set DERMAMNIST_NPZ (see ../shared/data/SOURCES.md)")
    root = project_checkout(tmp_path_factory.mktemp("checkout"))
    boards = {}
    # One process: the model input and phase1 in one start (each start costs seconds of imports).
    run([sys.executable, "-m", "dermascreen", "--env", "tiny", "--pipelines", "data_engineering,phase1"], root)
    boards["serial"] = leaderboard(root)
    for out in OUTPUTS:
        shutil.rmtree(root / out)
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *PHASE1], root)
    boards["torchrun"] = leaderboard(root)
    return boards


def leaderboard(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "data/08_reporting/phase1/leaderboard.csv").set_index("run").sort_index()


def test_two_processes_reach_the_metrics_of_one(leaderboards):
    serial, parallel = leaderboards["serial"], leaderboards["torchrun"]
    assert list(parallel.index) == list(serial.index) == ["CNN_v1_W0", "CNN_v1_W3"]
    assert (parallel["epochs_run"] == serial["epochs_run"]).all()
    for metric in ("val_roc_auc", "val_pr_auc"):
        assert (parallel[metric] - serial[metric]).abs().max() <= TOLERANCE, (metric, serial[metric], parallel[metric])


def _outputs_on_rank(local_rank: int, root: str) -> None:
    pipeline = build_grid(["CNN_v1"], ["W0"], load_config("tiny", "parameters")["phase1"]["architectures"])
    catalog = project_catalog(Path(root))
    DistributedHook().before_pipeline_run(run_params={}, pipeline=pipeline, catalog=catalog)
    kinds = {name: type(catalog.get(name)).__name__ for name in sorted(pipeline.all_outputs())}
    (Path(root) / f"rank{idist.get_rank()}.json").write_text(json.dumps(kinds))


def test_rank_0_alone_writes_the_outputs(tmp_path):
    with idist.Parallel(backend="gloo", nproc_per_node=2, init_method=f"file://{tmp_path / 'rendezvous'}") as parallel:
        parallel.run(_outputs_on_rank, str(tmp_path))
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0.keys() == rank1.keys() and "phase1.CNN_v1_W0.checkpoint" in rank0
    assert set(rank1.values()) == {MemoryDataset.__name__}
    assert rank0["phase1.CNN_v1_W0.checkpoint"] == "TorchDataset" and rank0["phase1_leaderboard"] == "CSVDataset"
