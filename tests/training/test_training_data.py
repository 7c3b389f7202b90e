"""uint8 batches -> normalised device tensors, epoch-seeded shuffling, and the split checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dermascreen.training.data import (check_split, eval_batches, normalization_tensors, to_model_input,
                                       train_batches)

from training_toys import NORMALIZATION, toy_split


def test_to_model_input_scales_normalises_and_moves_channels_first():
    images = torch.zeros(2, 4, 5, 3, dtype=torch.uint8)
    images[1, 0, 0] = torch.tensor([255, 51, 0], dtype=torch.uint8)
    mean, std = normalization_tensors({"mean": [0.5, 0.2, 0.1], "std": [0.5, 0.1, 0.1]}, torch.device("cpu"))

    x = to_model_input(images, mean, std, channels_last=False)

    assert x.shape == (2, 3, 4, 5) and x.dtype == torch.float32
    assert x[1, :, 0, 0].tolist() == pytest.approx([1.0, 0.0, -1.0])
    assert x[0, :, 0, 0].tolist() == pytest.approx([-1.0, -2.0, -1.0])
    assert to_model_input(images, mean, std, channels_last=True).is_contiguous(memory_format=torch.channels_last)


CPU = torch.device("cpu")


def epoch_labels(batches, epoch: int) -> list[int]:
    """The sample ids of one epoch, in batch order (toy labels are replaced by the sample index)."""
    batches.set_epoch(epoch)
    return [i for _, labels in batches for i in labels.tolist()]


def indexed_split(n: int) -> dict:
    split = toy_split(n, seed=0)
    return {**split, "binary": np.arange(n)}  # labels = ids, to read the order back


def test_train_batches_order_depends_on_seed_and_epoch_only():
    split = indexed_split(40)
    batches, again = train_batches(split, "binary", 16, CPU, seed=1), train_batches(split, "binary", 16, CPU, seed=1)

    first = epoch_labels(batches, 0)
    second = epoch_labels(batches, 1)

    assert sorted(first) == list(range(40)) and len(batches) == 3  # 16 + 16 + 8
    assert epoch_labels(again, 5) != first and epoch_labels(again, 0) == first  # (seed, epoch) alone
    assert second != first
    assert epoch_labels(train_batches(split, "binary", 16, CPU, seed=2), 0) != first


def test_train_batches_order_is_distributed_samplers():
    """The same permutation torch's DistributedSampler draws, so runs keep their batches across versions."""
    from torch.utils.data import DistributedSampler

    split = indexed_split(40)
    sampler = DistributedSampler(range(40), num_replicas=1, rank=0, shuffle=True, seed=7)
    sampler.set_epoch(3)

    assert epoch_labels(train_batches(split, "binary", 8, CPU, seed=7), 3) == list(sampler)


def test_train_batches_cut_to_max_batches_and_yield_device_tensors():
    split = indexed_split(40)
    full, cut = train_batches(split, "binary", 8, CPU, seed=1), train_batches(split, "binary", 8, CPU, seed=1, max_batches=2)

    assert len(cut) == 2 and epoch_labels(cut, 0) == epoch_labels(full, 0)[:16]
    images, labels = next(iter(cut))
    assert images.dtype == torch.uint8 and images.shape == (8, 8, 8, 3) and labels.dtype == torch.int64
    assert torch.equal(images, torch.from_numpy(split["images"][labels.numpy()]))


def test_drop_last_leaves_out_the_short_batch_and_needs_one_full_batch():
    split = indexed_split(10)
    kept, dropped = train_batches(split, "binary", 4, CPU, seed=1), train_batches(split, "binary", 4, CPU, seed=1,
                                                                                 drop_last=True)

    assert [len(labels) for _, labels in dropped] == [4, 4] and epoch_labels(dropped, 0) == epoch_labels(kept, 0)[:8]
    with pytest.raises(ValueError, match="10 samples cannot fill one batch of 16"):
        train_batches(split, "binary", 16, CPU, seed=1, drop_last=True)


def test_eval_batches_every_sample_once_in_order_with_a_short_last_batch():
    batches = eval_batches(indexed_split(10), "binary", 4, CPU)

    assert len(batches) == 3 and epoch_labels(batches, 0) == list(range(10))
    assert [len(labels) for _, labels in batches] == [4, 4, 2]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.pop("binary"), r"train: missing keys \['binary'\]"),
        (lambda s: s.update(images=s["images"].astype(np.float32)), "'images' must be uint8"),
        (lambda s: s.update(binary=s["binary"][:-1]), "'binary' must have shape"),
        (lambda s: s.update(binary=s["binary"] + 1), r"integers in \[0, 1\]"),
    ],
)
def test_check_split_names_the_split_and_the_problem(change, message):
    split = toy_split(10, seed=0)
    change(split)
    with pytest.raises(ValueError, match=message):
        check_split(split, "train", "binary", 2)


def test_normalization_must_have_three_positive_stds():
    with pytest.raises(ValueError, match="normalization: expected 3 means and 3 positive stds"):
        normalization_tensors({**NORMALIZATION, "std": [0.2, 0.0, 0.2]}, torch.device("cpu"))
    with pytest.raises(ValueError, match="missing key 'std'"):
        normalization_tensors({"mean": [0.1] * 3}, torch.device("cpu"))
