"""uint8 batches -> normalised device tensors, epoch-seeded shuffling, and the split checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dermascreen.training.data import (EpochSampler, check_split, normalization_tensors, tensor_dataset,
                                       to_model_input)

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


def test_epoch_sampler_order_depends_on_seed_and_epoch_only():
    dataset = tensor_dataset(toy_split(40, seed=0), "binary")
    sampler, again = EpochSampler(dataset, seed=1), EpochSampler(dataset, seed=1)

    first = list(sampler)
    again.set_epoch(0)
    sampler.set_epoch(1)

    assert sorted(first) == list(range(40))
    assert list(again) == first  # same (seed, epoch) -> same order, whatever came before
    assert list(sampler) != first
    assert list(EpochSampler(dataset, seed=2)) != first


def test_epoch_sampler_cut_to_max_samples():
    dataset = tensor_dataset(toy_split(40, seed=0), "binary")
    full, cut = EpochSampler(dataset, seed=1), EpochSampler(dataset, seed=1, max_samples=8)

    assert len(cut) == 8 and list(cut) == list(full)[:8]


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
