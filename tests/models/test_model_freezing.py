"""unfreeze 0 / N / all: exactly the intended parameters get gradients; frozen BatchNorm stays frozen."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dermascreen.models import backbone_layers, build_model, freeze_bn_stats, set_trainable

# The last three backbone layers of each arch, written out by hand from the architectures.
LAST_THREE = {
    "cnn": ["1.1", "2.0", "2.1"],  # block 2's BN, block 3's conv and BN (CNN_v1)
    "resnet50": ["layer4.2.bn2", "layer4.2.conv3", "layer4.2.bn3"],
    "vgg16": ["features.24", "features.26", "features.28"],  # conv5_1..conv5_3
    "efficientnet_b0": ["blocks.6.0.bn3", "conv_head", "bn2"],
}
LAYER_COUNTS = {"cnn": 6, "resnet50": 106, "vgg16": 13, "efficientnet_b0": 130}


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {arch: build_model({"arch": arch}) for arch in LAST_THREE}


def backward_once(model: nn.Module) -> None:
    model.zero_grad(set_to_none=True)
    model.train()
    images = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    model(images).logsumexp(dim=1).sum().backward()


def with_gradient(model: nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.grad is not None}


def parameters_of(model: nn.Module, layers: list[str]) -> set[str]:
    return {f"backbone.{layer}.{name}" for layer in layers
            for name, _ in model.backbone.get_submodule(layer).named_parameters(recurse=False)}


@pytest.mark.parametrize("arch", LAST_THREE)
def test_layer_counts_are_the_documented_ones(arch, models):
    assert len(backbone_layers(models[arch])) == LAYER_COUNTS[arch]


@pytest.mark.parametrize("arch", LAST_THREE)
def test_exactly_the_intended_parameters_get_gradients(arch, models):
    model = models[arch]
    everything = {name for name, _ in model.named_parameters()}
    head = {name for name in everything if name.startswith("head.")}
    assert head and head | {n for n in everything if n.startswith("backbone.")} == everything

    assert set_trainable(model, 0) == []
    backward_once(model)
    assert with_gradient(model) == head

    assert set_trainable(model, 3) == LAST_THREE[arch]
    backward_once(model)
    assert with_gradient(model) == head | parameters_of(model, LAST_THREE[arch])
    assert {n for n, p in model.named_parameters() if p.requires_grad} == with_gradient(model)

    set_trainable(model, "all")
    backward_once(model)
    assert with_gradient(model) == everything


def test_unfreeze_beyond_the_layer_count_trains_the_whole_backbone(models):
    model = models["cnn"]
    assert len(set_trainable(model, 20)) == 6
    assert all(p.requires_grad for p in model.parameters())


def test_vit_freezes_its_encoder_but_not_its_head():
    model = build_model({"arch": "vit", "num_classes": 2, "depth": 2, "unfreeze": 0})
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias"}
    set_trainable(model, 2)  # the encoder's last two layers: block 1's MLP output, then the final LayerNorm
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias", "encoder.norm.weight", "encoder.norm.bias",
                         "encoder.blocks.1.mlp.fc2.weight", "encoder.blocks.1.mlp.fc2.bias"}


def test_frozen_batchnorm_keeps_its_running_statistics():
    torch.manual_seed(0)
    model = build_model({"arch": "efficientnet_b0", "unfreeze": 0})
    model.train()
    stem_bn, head_bn = model.backbone.bn1, model.head[2]
    assert not stem_bn.training and head_bn.training and model.training
    stem_before, head_before = stem_bn.running_mean.clone(), head_bn.running_mean.clone()
    model(torch.randn(4, 3, 28, 28))
    torch.testing.assert_close(stem_bn.running_mean, stem_before, atol=0, rtol=0)
    assert not torch.equal(head_bn.running_mean, head_before)

    set_trainable(model, "all")
    model.train()
    assert stem_bn.training
    model(torch.randn(4, 3, 28, 28))
    assert not torch.equal(stem_bn.running_mean, stem_before)


def test_freeze_bn_stats_works_on_any_module():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.BatchNorm2d(4, affine=False), nn.BatchNorm2d(4))
    net[1].requires_grad_(False)
    freeze_bn_stats(net.train())
    assert [m.training for m in net] == [True, False, True, True]
