"""What `make gpu-check` runs on a CUDA machine: the tests marked `cuda`.

Every test runs once per device: the `cuda` case needs a GPU (skipped without one, saying so); its
CPU twin runs in every `pytest`, so the test itself is proven before a GPU ever sees it.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from project_helpers import benchmark_module
from dermascreen.models import build_model
from dermascreen.pretraining.augment import Augment
from dermascreen.pretraining.automae import AutoMAEPretrainer, gumbel_topk_mask
from dermascreen.pretraining.mae import MAEPretrainer
from dermascreen.pretraining.methods import build_autoencoder
from dermascreen.pretraining.mlo_mae import MLOMAEPretrainer
from dermascreen.pretraining.semmae import SemMAEPretrainer
from dermascreen.training import fit
from dermascreen.training.augment import BatchAugment
from dermascreen.training.engines import create_trainer

from training_toys import BASE_CONFIG, NORMALIZATION, SimulatedKill, count_train_batches, tiny_net

NO_CUDA = "needs a CUDA GPU and torch sees none: `make gpu-check` runs it on a GPU machine"
DEVICES = [pytest.param("cpu"),
           pytest.param("cuda", marks=[pytest.mark.cuda,
                                       pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)])]
CPU_BATCH = 4  # the CPU twin of the per-architecture test proves the test, not base sizes


gpu_check = benchmark_module("gpu_check")


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_autocast_step_computes_in_bf16_and_keeps_fp32_weights(device, toy_train):
    target = torch.device(device)
    model = tiny_net().to(target)
    conv_out = []
    model[0].register_forward_hook(lambda module, args, output: conv_out.append(output.dtype))
    before = [p.detach().clone() for p in model.parameters()]
    trainer = create_trainer(model, torch.optim.Adam(model.parameters(), lr=1e-2), nn.CrossEntropyLoss(),
                             target, NORMALIZATION, precision="bf16")
    batch = (torch.from_numpy(toy_train["images"][:16]), torch.from_numpy(toy_train["binary"][:16]))
    trainer.run([batch], max_epochs=1)
    assert conv_out == [torch.bfloat16]
    assert math.isfinite(trainer.state.output)
    assert all(p.dtype == torch.float32 and p.device.type == device for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("device", DEVICES)
def test_per_step_random_draws_never_wait_for_the_gpu(device):
    """The draws of every training step (binary augmentation, each pretraining augmentation, MAE's
    masks, AutoMAE's Gumbel noise and prior masks, SemMAE's part masks and MLO-MAE's labelled
    batches, from their CPU generators) under CUDA's sync debug mode "error": a copy from the host
    that waits for the GPU raises. The CPU twin runs the same calls."""
    target, generator = torch.device(device), torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    mae = build_autoencoder({"embed_dim": 16, "depth": 1, "num_heads": 2}, {"dim": 16, "depth": 1, "heads": 2},
                            mask_ratio=0.75).to(target)
    automae = AutoMAEPretrainer(mae, lr=1e-3, weight_decay=0.0, seed=0, source_encoder=mae.encoder)
    semmae = SemMAEPretrainer(mae, lr=1e-3, weight_decay=0.0, seed=0, part_encoder=mae.encoder)
    rng = np.random.default_rng(0)
    mlo_mae = MLOMAEPretrainer(mae, lr=1e-3, weight_decay=0.0, seed=0, normalization=NORMALIZATION, batch_size=8,
                               images=rng.integers(0, 256, (42, 28, 28, 3), dtype=np.uint8),
                               labels=np.arange(42) % 7, masking_network={"hidden": 16})
    images = torch.rand(8, 3, 28, 28, device=target)
    cuda = target.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
    try:
        outputs = [BatchAugment(hflip=True, vflip=False).train()(images),
                   *(Augment(kind, 32, NORMALIZATION)(images, generator) for kind in ("resized_crop", "crop")),
                   MAEPretrainer(mae, lr=1e-3, weight_decay=0.0, seed=0).mask_scores(images, 0.0),
                   gumbel_topk_mask(torch.zeros(8, 64, device=target), 48, 0.5, generator)[0],
                   automae.prior_masks(8, target),
                   semmae.mask_scores(images, 0.5),
                   mlo_mae.labelled_batch("train")[0]]
    finally:
        if cuda:
            torch.cuda.set_sync_debug_mode("default")
    assert [tuple(out.shape) for out in outputs] == [(8, 3, 28, 28), (8, 3, 32, 32), (8, 3, 32, 32), (8, 64),
                                                    (8, 64), (8, 64), (8, 64), (8, 3, 28, 28)]
    assert all(out.device.type == device for out in outputs)


@pytest.mark.parametrize("device", DEVICES)
def test_no_training_step_and_no_validation_batch_waits_for_the_gpu(device, toy_train, toy_val):
    """Under CUDA's sync debug mode "warn" every wait for the GPU is a warning: an epoch of 6 steps
    and 6 validation batches waits exactly as often as one of 2 and 2 (the waits of an epoch's
    end: its loss, the metrics, the best weights, which the guard at 0 always keeps). A first
    epoch, not counted, pays the one-off waits (kernel selection). The CPU twin runs the same epochs."""
    cuda = device == "cuda"

    def waits(batches: int) -> int:
        config = {**BASE_CONFIG, "device": device, "precision": "bf16", "epochs": 1, "batch_size": 8,
                  "max_train_batches": batches, "min_specificity": 0.0}
        val = {key: value[:8 * batches] for key, value in toy_val.items()}
        torch.manual_seed(0)
        model = tiny_net()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.set_sync_debug_mode("warn")
            try:
                result = fit(model, toy_train, val, config, [1.0, 2.0], NORMALIZATION)
            finally:
                if cuda:
                    torch.cuda.set_sync_debug_mode("default")
        assert math.isfinite(result.history[0]["val_loss"])
        return sum("synchroniz" in str(warning.message) for warning in caught)

    waits(2)  # warm-up
    assert waits(2) == waits(6)


@pytest.mark.parametrize("device", DEVICES)
def test_fit_in_bf16_trains_channels_last(device, toy_train, toy_val):
    model = tiny_net()
    conv_in = []
    model[0].register_forward_pre_hook(
        lambda module, args: conv_in.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    result = fit(model, toy_train, toy_val, {**BASE_CONFIG, "device": device, "precision": "bf16", "epochs": 1},
                 [1.0, 2.0], NORMALIZATION)
    assert model[0].weight.device.type == device
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert conv_in and all(conv_in)  # training and validation batches
    assert math.isfinite(result.history[0]["train_loss"])


@pytest.mark.parametrize("device", DEVICES)
def test_fit_resumes_after_a_kill(device, toy_train, toy_val, tmp_path):
    config = {**BASE_CONFIG, "device": device, "precision": "auto", "epochs": 3, "checkpoint_every_s": 0}
    per_epoch = math.ceil(len(toy_train["images"]) / config["batch_size"])
    killed = tiny_net()
    count_train_batches(killed, fail_after=per_epoch + 2)  # in epoch 2, after epoch 1 was saved
    with pytest.raises(SimulatedKill):
        fit(killed, toy_train, toy_val, config, [1.0, 2.0], NORMALIZATION, checkpoint_dir=tmp_path)

    resumed = tiny_net()
    trained = count_train_batches(resumed)
    result = fit(resumed, toy_train, toy_val, config, [1.0, 2.0], NORMALIZATION, checkpoint_dir=tmp_path)
    assert trained[0] == 2 * per_epoch  # epochs 2 and 3 only
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert result.stop_reason == "max_epochs"
    assert all(math.isfinite(row["train_loss"]) for row in result.history)


@pytest.fixture(scope="module")
def base():
    parameters = gpu_check.base_parameters()
    return gpu_check.base_runs(parameters), parameters["data_engineering"]["image_size"]


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(gpu_check.ARCH_RUNS))
@pytest.mark.parametrize("device", DEVICES)
def test_two_steps_of_each_architecture_at_base_settings(device, arch, base):
    runs, image_size = base
    run = runs[arch]
    batch = run["training"]["batch_size"] if device == "cuda" else CPU_BATCH
    training = {**run["training"], "device": device, "epochs": 1, "batch_size": batch, "max_train_batches": 2,
                "progress": False}
    train = gpu_check.random_split(3 * batch, image_size, seed=0)
    val = gpu_check.random_split(batch, image_size, seed=1)
    torch.manual_seed(0)
    model = build_model(run["model"])
    steps = count_train_batches(model)
    result = fit(model, train, val, training, [1.0, 3.0], NORMALIZATION)
    assert steps[0] == 2
    assert math.isfinite(result.history[0]["train_loss"])
    assert np.isfinite(result.history[0]["val_loss"])
    assert next(model.parameters()).device.type == device
