"""MAE's fine-tuning recipe in ``fit``: layer-wise lr decay groups and the warmup + cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch

from dermascreen.models.vit import ViTClassifier, ViTEncoder
from dermascreen.training.fit import _lr_scheduler, _param_groups, resolve_config


def _vit(depth: int = 3) -> ViTClassifier:
    return ViTClassifier(ViTEncoder(embed_dim=16, depth=depth, num_heads=2), 7)


def test_layer_decay_scales_each_block_and_spares_biases_and_norms_from_weight_decay():
    model = _vit(depth=3)
    cfg = resolve_config({"lr": 1e-3, "weight_decay": 0.05, "layer_decay": 0.5, "optimizer": "adamw"}, 7)
    groups = _param_groups(model, cfg)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["head.weight"])] == pytest.approx(1e-3)  # the top layer: the configured lr
    assert lr_of[id(named["encoder.blocks.2.mlp.fc1.weight"])] == pytest.approx(5e-4)
    assert lr_of[id(named["encoder.blocks.0.mlp.fc1.weight"])] == pytest.approx(1.25e-4)
    assert lr_of[id(named["encoder.patch_embed.weight"])] == pytest.approx(6.25e-5)  # 4 layers below the head
    assert decay_of[id(named["encoder.blocks.0.mlp.fc1.weight"])] == 0.05
    assert decay_of[id(named["encoder.blocks.0.mlp.fc1.bias"])] == 0.0
    assert decay_of[id(named["encoder.blocks.0.norm1.weight"])] == 0.0
    assert len(lr_of) == sum(1 for _ in model.parameters())  # every parameter in exactly one group


def test_the_schedule_scales_every_group_from_its_own_lr():
    model = _vit(depth=2)
    cfg = resolve_config({"lr": 1e-3, "layer_decay": 0.5, "lr_schedule": "warmup_cosine", "epochs": 4,
                          "warmup_epochs": 1}, 7)
    optimizer = torch.optim.AdamW(_param_groups(model, cfg))
    peak = [g["lr"] for g in optimizer.param_groups]
    scheduler = _lr_scheduler(optimizer, cfg, steps_per_epoch=10)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([lr / 10 for lr in peak])  # warming up
    for _ in range(9):
        optimizer.step()
        scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx(peak)  # end of warmup: each at its peak
    optimizer.step()
    scheduler.step()
    for _ in range(15):
        optimizer.step()
        scheduler.step()
    factor = 0.5 * (1 + math.cos(math.pi * 15 / 30))
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([factor * lr for lr in peak])


@pytest.mark.parametrize("config, message", [
    ({"layer_decay": 0.0}, "layer_decay must be in (0, 1]"),
    ({"warmup_epochs": 5, "epochs": 5}, "warmup_epochs must be an integer in [0, epochs)"),
    ({"lr_schedule": "cosine"}, "lr_schedule must be one of constant, onecycle, warmup_cosine"),
])
def test_impossible_recipes_are_refused(config, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        resolve_config(config, 7)


def test_layer_decay_needs_a_model_with_layers():
    cfg = resolve_config({"layer_decay": 0.75}, 2)
    with pytest.raises(ValueError, match="layer_decay needs a model with layers to decay"):
        _param_groups(torch.nn.Linear(3, 2), cfg)
