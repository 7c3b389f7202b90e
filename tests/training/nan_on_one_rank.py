"""Run by ``torchrun --nproc_per_node 2`` (tests/training/test_distributed.py): rank 1's loss turns
NaN on its last training batch of epoch 1, rank 0's losses stay finite; each rank writes how its
``fit`` ended to ``<out_dir>/rank<r>.json``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import ignite.distributed as idist
import torch

from dermascreen.training import fit

from training_toys import BASE_CONFIG, NORMALIZATION, tiny_net, toy_split

BATCHES_PER_EPOCH = 6  # 96 images, global batch 16: 8 per rank


def poison_last_batch_of_first_epoch(model: torch.nn.Module) -> None:
    calls = [0]

    def hook(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        if module.training:
            calls[0] += 1
            if calls[0] == BATCHES_PER_EPOCH:
                return output * float("nan")
        return output

    model.register_forward_hook(hook)


def main(out_dir: str) -> None:
    torch.set_num_threads(1)
    with idist.Parallel(backend="gloo"):  # joins the group torchrun describes in the environment
        model = tiny_net()
        if idist.get_rank() == 1:
            poison_last_batch_of_first_epoch(model)
        result = fit(model, toy_split(96, seed=0), toy_split(48, seed=1), BASE_CONFIG, [1.0, 2.0], NORMALIZATION)
        Path(out_dir, f"rank{idist.get_rank()}.json").write_text(
            json.dumps({"stop_reason": result.stop_reason, "epochs": len(result.history)}))


if __name__ == "__main__":
    main(sys.argv[1])
