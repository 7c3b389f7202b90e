"""Every pretraining method killed in an epoch and started again ends bitwise as an uninterrupted run.

The kills here are exceptions raised inside a training step (tests/test_kill_resume.py kills a real
``kedro run`` of a pretraining node).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from dermascreen.models.vit import ViTEncoder
from dermascreen.pretraining.engine import run_pretraining
from dermascreen.pretraining.methods import METHODS, build_autoencoder, build_pretrainer

ENCODER = {"embed_dim": 16, "depth": 1, "num_heads": 2}
DECODER = {"dim": 16, "depth": 1, "heads": 2}
PRETRAIN = {"lr": 1e-3, "weight_decay": 0.05, "seed": 0, "augment": "official"}  # every batch augmented
NORMALIZATION = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
OPTIONS = {"mlo_mae": {"batch_size": 8, "masking_network": {"hidden": 8}},
           "semmae": {"num_parts": 3}}
BATCHES_PER_EPOCH = 4  # 70 images, batches of 16, the last incomplete one dropped


class SimulatedKill(RuntimeError):
    pass


@pytest.fixture(scope="module")
def data() -> dict:
    rng = np.random.default_rng(0)
    return {"images": rng.integers(0, 256, (70, 28, 28, 3), dtype=np.uint8), "labels": np.arange(70) % 7}


def pretrainer(method: str, data: dict, precision: str = "fp32"):
    torch.manual_seed(1)  # as the node: every initial weight depends on the seed alone
    source = ViTEncoder(**ENCODER)
    mae = build_autoencoder(ENCODER, DECODER, mask_ratio=0.75)
    return build_pretrainer(method, mae, {**PRETRAIN, "precision": precision}, OPTIONS.get(method, {}), data,
                            NORMALIZATION, source)


def run(trainer, data: dict, directory) -> tuple[list[dict], dict]:
    return run_pretraining(trainer, data, NORMALIZATION, epochs=3, batch_size=16, warmup_epochs=0.5, seed=0,
                           checkpoint_dir=directory, checkpoint_every_s=0, settings={"test": True})


def losses(history: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key not in ("seconds", "images_per_s")} for row in history]


def counts(compute: dict) -> dict:
    return {key: value for key, value in compute.items() if key != "seconds"}


def tensors(state) -> list:
    """Every tensor and number of a nested state, in order (optimizer moments, generator states...)."""
    if isinstance(state, dict):
        return [item for key in sorted(state, key=str) for item in tensors(state[key])]
    if isinstance(state, (list, tuple)):
        return [item for value in state for item in tensors(value)]
    return [state]


def assert_bitwise_equal(a, b) -> None:
    left, right = tensors(a), tensors(b)
    assert len(left) == len(right)
    for x, y in zip(left, right):
        assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y


@pytest.mark.parametrize("method", METHODS)
def test_a_killed_pretraining_resumes_and_ends_as_an_uninterrupted_run(method, data, tmp_path, caplog):
    reference = pretrainer(method, data)
    uninterrupted, compute = run(reference, data, tmp_path / "reference")

    doomed = pretrainer(method, data)
    step, calls = doomed.step, []

    def dies_in_epoch_2(images, progress):
        calls.append(1)
        if len(calls) > BATCHES_PER_EPOCH + 2:
            raise SimulatedKill
        return step(images, progress)

    doomed.step = dies_in_epoch_2
    with pytest.raises(SimulatedKill):
        run(doomed, data, tmp_path / "state")

    torch.manual_seed(123)  # the global RNG of a new process: the restore must set it
    resumed = pretrainer(method, data)
    with caplog.at_level(logging.INFO, logger="dermascreen.pretraining"):
        history, resumed_compute = run(resumed, data, tmp_path / "state")
    assert "after epoch 1" in caplog.text
    assert losses(history) == losses(uninterrupted)
    assert counts(resumed_compute) == counts(compute)  # the killed part's passes were saved too
    assert_bitwise_equal(resumed.state_dict(), reference.state_dict())  # modules, optimizers, generator

    again, again_compute = run(pretrainer(method, data), data, tmp_path / "state")  # finished: stored
    assert losses(again) == losses(uninterrupted) and counts(again_compute) == counts(compute)


def test_another_job_starts_over_and_says_why(data, tmp_path, caplog):
    run(pretrainer("mae", data), data, tmp_path)
    with caplog.at_level(logging.INFO, logger="dermascreen.training"):
        history = run_pretraining(pretrainer("mae", data), data, NORMALIZATION, epochs=3, batch_size=16,
                                  warmup_epochs=0.5, seed=0, checkpoint_dir=tmp_path, checkpoint_every_s=0,
                                  settings={"test": False})[0]
    assert "belongs to another job (changed: settings method.test)" in caplog.text
    assert len(history) == 3


@pytest.mark.parametrize("method", METHODS)
def test_every_method_steps_in_bf16_with_fp32_losses(method, data):
    trainer = pretrainer(method, data, precision="bf16")
    images = torch.randn(16, 3, 28, 28)
    for _ in range(2):  # MLO-MAE: both levels
        logged = trainer.step(images, 0.5)
    assert all(value.dtype == torch.float32 and torch.isfinite(value) for value in logged.values())
