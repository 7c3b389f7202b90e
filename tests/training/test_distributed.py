"""fit under ignite.distributed: two CPU processes (gloo) train one data-parallel model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import ignite.distributed as idist
import pytest
import torch

from dermascreen.training import fit

from project_helpers import command_env
from training_toys import BASE_CONFIG, NORMALIZATION, tiny_net, toy_split

HERE = Path(__file__).parent


def _train_on_rank(local_rank: int, out_dir: str) -> None:
    """Runs in each spawned process; writes what the parent compares."""
    torch.set_num_threads(1)
    model = tiny_net(seed=local_rank)  # different initial weights: DDP must broadcast rank 0's
    result = fit(model, toy_split(96, seed=0), toy_split(48, seed=1), {**BASE_CONFIG, "epochs": 2}, [1.0, 2.0],
                 NORMALIZATION)
    history = [{k: v for k, v in row.items() if not k.endswith("_time_s")} for row in result.history]
    torch.save({"world_size": idist.get_world_size(), "final": model.state_dict(), "best": result.state_dict,
                "history": history}, Path(out_dir) / f"rank{idist.get_rank()}.pt")


def _both_fits_on_rank(local_rank: int, out_dir: str) -> None:
    """Both trainings of the two tests below in one pair of processes (each start costs seconds of imports)."""
    _train_on_rank(local_rank, out_dir)
    _plain_fit_on_rank(local_rank, out_dir)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> Path:
    """The folder where two gloo processes wrote what ``_train_on_rank`` and ``_plain_fit_on_rank`` save."""
    out = tmp_path_factory.mktemp("two_processes")
    with idist.Parallel(backend="gloo", nproc_per_node=2, init_method=f"file://{out / 'rendezvous'}") as parallel:
        parallel.run(_both_fits_on_rank, str(out))
    return out


@pytest.mark.slow
def test_two_gloo_processes_end_with_identical_weights(two_processes):
    ranks = [torch.load(two_processes / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["history"] == ranks[1]["history"]  # same metrics, so the same early-stopping decisions
    assert len(ranks[0]["history"]) == 2
    for key in ("final", "best"):
        for name, tensor in ranks[0][key].items():
            assert torch.equal(tensor, ranks[1][key][name]), f"{key} {name}"
    initial = tiny_net(seed=0).state_dict()
    assert not torch.equal(ranks[0]["final"]["0.weight"], initial["0.weight"])  # it trained


def plain_net() -> torch.nn.Module:
    """No BatchNorm, no dropout: nothing that depends on the rank's share or draws."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(4, 2))


def _plain_fit_on_rank(local_rank: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    model = plain_net()
    result = fit(model, toy_split(96, seed=0), toy_split(48, seed=1), {**BASE_CONFIG, "epochs": 2}, None,
                 NORMALIZATION)
    if idist.get_rank() == 0:
        torch.save({"final": model.state_dict(), "history": result.history}, Path(out_dir) / "parallel.pt")


@pytest.mark.slow
def test_two_processes_train_what_one_process_trains(two_processes):
    """The global batch of step k holds the same images on 1 or 2 processes, and DDP averages the
    two halves' gradients: without BatchNorm, dropout or class weights, the same model up to float sums."""
    parallel = torch.load(two_processes / "parallel.pt", weights_only=True)
    model = plain_net()
    serial = fit(model, toy_split(96, seed=0), toy_split(48, seed=1), {**BASE_CONFIG, "epochs": 2}, None, NORMALIZATION)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(parallel["final"][name], tensor, atol=1e-5, rtol=1e-4)
    for one, two in zip(serial.history, parallel["history"]):
        assert two["val_roc_auc"] == pytest.approx(one["val_roc_auc"], abs=1e-6)
        assert two["val_loss"] == pytest.approx(one["val_loss"], abs=1e-5)


@pytest.mark.slow
def test_a_nan_on_one_rank_stops_every_rank(tmp_path):
    """Rank 1's loss turns NaN on the last batch of epoch 1 while rank 0's stay finite: the epoch
    loss is all-reduced before the stop decision, so both stop there; neither waits for the other
    in the evaluation (a hang would end in the timeout)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(HERE / "nan_on_one_rank.py"), str(tmp_path)]
    result = subprocess.run(command, cwd=HERE, env=command_env(PYTHONPATH=str(HERE.parents[1] / "src")),
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks == [{"stop_reason": "nan_loss", "epochs": 0}] * 2
