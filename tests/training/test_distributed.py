"""fit under ignite.distributed: two CPU processes (gloo) train one data-parallel model."""

from __future__ import annotations

from pathlib import Path

import ignite.distributed as idist
import pytest
import torch

from dermascreen.training import fit

from training_toys import BASE_CONFIG, NORMALIZATION, tiny_net, toy_split


def _train_on_rank(local_rank: int, out_dir: str) -> None:
    """Runs in each spawned process; writes what the parent compares."""
    torch.set_num_threads(1)
    model = tiny_net(seed=local_rank)  # different initial weights: DDP must broadcast rank 0's
    result = fit(model, toy_split(96, seed=0), toy_split(48, seed=1), {**BASE_CONFIG, "epochs": 2}, [1.0, 2.0],
                 NORMALIZATION)
    history = [{k: v for k, v in row.items() if not k.endswith("_time_s")} for row in result.history]
    torch.save({"world_size": idist.get_world_size(), "final": model.state_dict(), "best": result.state_dict,
                "history": history}, Path(out_dir) / f"rank{idist.get_rank()}.pt")


@pytest.mark.slow
def test_two_gloo_processes_end_with_identical_weights(tmp_path):
    with idist.Parallel(backend="gloo", nproc_per_node=2, init_method=f"file://{tmp_path / 'rendezvous'}") as parallel:
        parallel.run(_train_on_rank, str(tmp_path))

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["history"] == ranks[1]["history"]  # same metrics, so the same early-stopping decisions
    assert len(ranks[0]["history"]) == 2
    for key in ("final", "best"):
        for name, tensor in ranks[0][key].items():
            assert torch.equal(tensor, ranks[1][key][name]), f"{key} {name}"
    initial = tiny_net(seed=0).state_dict()
    assert not torch.equal(ranks[0]["final"]["0.weight"], initial["0.weight"])  # it trained
