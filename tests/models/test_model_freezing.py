"""unfreeze counts Keras layers: the lists match keras.applications, cover every parameter once,
and exactly the intended parameters train; frozen BatchNorm stays frozen."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dermascreen.models import build_model, freeze_bn_stats, set_trainable
from dermascreen.models.layers import backbone_of

CONFIGS = {
    "resnet50": {"arch": "resnet50"},
    "vgg16": {"arch": "vgg16"},
    "efficientnet_b0": {"arch": "efficientnet_b0"},
    "CNN_v1": {"arch": "cnn", "filters": 32, "depth": 3, "dropout": 0.5, "dense": 512},
    "CNN_v2": {"arch": "cnn", "filters": 64, "depth": 4, "dropout": 0.4, "dense": 256},
    "vit": {"arch": "vit"},
    "resnet_cifar": {"arch": "resnet_cifar"},
}
# len(model.layers) of keras.applications ResNet50 / VGG16 / EfficientNetB0 (include_top=False),
# as the design note gives them; CNN: 5 per block + 5; ViT (depth 6): 4 + 9 * 6 + 1; resnet_cifar
# (3 stages of 2 blocks): stem 4 + 7 per block + 2 for each of the 2 projection shortcuts + head 3.
KERAS_COUNTS = {"resnet50": 175, "vgg16": 19, "efficientnet_b0": 237, "CNN_v1": 20, "CNN_v2": 25, "vit": 59,
                "resnet_cifar": 4 + 7 * 6 + 2 * 2 + 3}


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {name: build_model(config) for name, config in CONFIGS.items()}


def names(model: nn.Module) -> list[str]:
    return [layer.name for layer in model.keras_layers()]


def trainable(model: nn.Module, prefix: str = "") -> int:
    return sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and n.startswith(prefix))


@pytest.mark.parametrize("name", CONFIGS)
def test_keras_layer_counts(name, models):
    assert len(models[name].keras_layers()) == KERAS_COUNTS[name]
    assert len(set(names(models[name]))) == KERAS_COUNTS[name]


@pytest.mark.parametrize("name", CONFIGS)
def test_every_parameter_belongs_to_exactly_one_keras_layer(name, models):
    model = models[name]
    owner: dict[int, str] = {}
    for layer in model.keras_layers():
        for parameter in layer.parameters(model):
            assert id(parameter) not in owner, f"{layer.name} and {owner[id(parameter)]} share a parameter"
            owner[id(parameter)] = layer.name
    # this project's CNNs list the whole model, the others the backbone (Keras base model)
    scope = model if name.startswith(("CNN", "resnet_cifar")) else backbone_of(model)
    assert {id(p) for p in scope.parameters()} == set(owner)


def test_resnet50_layers_follow_keras_order(models):
    layers = names(models["resnet50"])
    assert layers[:7] == ["input", "conv1_pad", "conv1_conv", "conv1_bn", "conv1_relu", "pool1_pad", "pool1_pool"]
    # a stage's first block: Keras' order by distance to the output puts the shortcut between
    assert layers[7:19] == [f"conv2_block1_{part}" for part in (
        "1_conv", "1_bn", "1_relu", "2_conv", "2_bn", "2_relu", "0_conv", "3_conv", "0_bn", "3_bn", "add", "out")]
    assert layers[-20:] == [f"conv5_block{b}_{part}" for b in (2, 3) for part in (
        "1_conv", "1_bn", "1_relu", "2_conv", "2_bn", "2_relu", "3_conv", "3_bn", "add", "out")]


def test_resnet_cifar_layers_follow_keras_order(models):
    layers = names(models["resnet_cifar"])
    assert layers[:11] == ["input", "conv1_conv", "conv1_bn", "conv1_relu"] + [
        f"conv2_block1_{part}" for part in ("1_conv", "1_bn", "1_relu", "2_conv", "2_bn", "add", "out")]
    assert layers[18:27] == [f"conv3_block1_{part}" for part in (
        "1_conv", "1_bn", "1_relu", "0_conv", "2_conv", "0_bn", "2_bn", "add", "out")]
    assert layers[-3:] == ["avg_pool", "dropout", "predictions"]


def test_vgg16_layers_are_keras_vgg16(models):
    expected = ["input"]
    for block, convs in enumerate((2, 2, 3, 3, 3), start=1):
        expected += [f"block{block}_conv{c}" for c in range(1, convs + 1)] + [f"block{block}_pool"]
    assert names(models["vgg16"]) == expected


def test_efficientnet_b0_layers_follow_keras_block(models):
    layers = names(models["efficientnet_b0"])
    assert layers[:17] == ["input", "rescaling", "normalization", "stem_conv_pad", "stem_conv", "stem_bn",
                           "stem_activation"] + [f"block1a_{part}" for part in (
                               "dwconv", "bn", "activation", "se_squeeze", "se_reshape", "se_reduce",
                               "se_expand", "se_excite", "project_conv", "project_bn")]
    stride_2 = ["expand_conv", "expand_bn", "expand_activation", "dwconv_pad", "dwconv", "bn", "activation",
                "se_squeeze", "se_reshape", "se_reduce", "se_expand", "se_excite", "project_conv", "project_bn"]
    assert layers[17:31] == [f"block2a_{part}" for part in stride_2]
    skip = [part for part in stride_2 if part != "dwconv_pad"] + ["drop", "add"]
    assert layers[31:46] == [f"block2b_{part}" for part in skip]
    assert layers[-3:] == ["top_conv", "top_bn", "top_activation"]
    # the last 30: top (3) + block7a (13, no skip) + all of block6d but its expand_conv
    assert layers[-30] == "block6d_expand_bn" and layers[-31] == "block6d_expand_conv"


def test_design_note_figures(models):
    """ResNet_v2's last 20 layers are conv5_block2-3; VGG_v2's last 4 are block5 (convs + pool)."""
    resnet, vgg, cnn = models["resnet50"], models["vgg16"], models["CNN_v1"]
    set_trainable(resnet, 20)
    bottleneck = 2048 * 512 + 2 * 512 + 9 * 512 * 512 + 2 * 512 + 512 * 2048 + 2 * 2048  # no conv bias in timm
    assert trainable(resnet, "backbone.") == 2 * bottleneck == 8_925_184
    set_trainable(vgg, 4)
    assert trainable(vgg, "backbone.") == 3 * (9 * 512 * 512 + 512) == 7_079_424
    # CNN_v1 (20 layers): Freeze10 trains block 3 and the head, Freeze20 everything
    assert set_trainable(cnn, 10)[:5] == ["block3_conv", "block3_bn", "block3_relu", "block3_pool", "block3_dropout"]
    freeze10 = trainable(cnn)
    set_trainable(cnn, 20)
    assert freeze10 < trainable(cnn) == sum(p.numel() for p in cnn.parameters())


def backward_once(model: nn.Module) -> None:
    model.zero_grad(set_to_none=True)
    model.train()
    images = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    model(images).logsumexp(dim=1).sum().backward()


def with_gradient(model: nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.grad is not None}


# The last three Keras layers of each model and the torch parameters they hold.
LAST_THREE = {
    "resnet50": (["conv5_block3_3_bn", "conv5_block3_add", "conv5_block3_out"],
                 {"backbone.layer4.2.bn3.weight", "backbone.layer4.2.bn3.bias"}),
    "vgg16": (["block5_conv2", "block5_conv3", "block5_pool"],
              {f"backbone.features.{i}.{p}" for i in (26, 28) for p in ("weight", "bias")}),
    "efficientnet_b0": (["top_conv", "top_bn", "top_activation"],
                        {"backbone.conv_head.weight", "backbone.bn2.weight", "backbone.bn2.bias"}),
    "CNN_v1": (["dense_relu", "dense_dropout", "predictions"], set()),  # head layers: they always train
    "vit": (["block6_mlp_dropout2", "block6_mlp_add", "norm"],
            {"encoder.norm.weight", "encoder.norm.bias"}),
    "resnet_cifar": (["avg_pool", "dropout", "predictions"], set()),  # head layers, as the CNN's
}


@pytest.mark.parametrize("name", LAST_THREE)
def test_exactly_the_intended_parameters_get_gradients(name, models):
    model = models[name]
    everything = {n for n, _ in model.named_parameters()}
    backbone = {n for n in everything if n.startswith(("backbone.", "encoder."))}
    head = everything - backbone
    assert head and backbone

    assert set_trainable(model, 0) == []
    backward_once(model)
    assert with_gradient(model) == head

    last_three, parameters = LAST_THREE[name]
    assert set_trainable(model, 3) == last_three
    backward_once(model)
    assert with_gradient(model) == head | parameters
    assert {n for n, p in model.named_parameters() if p.requires_grad} == with_gradient(model)

    assert len(set_trainable(model, "all")) == KERAS_COUNTS[name]
    backward_once(model)
    assert with_gradient(model) == everything


def test_unfreeze_beyond_the_layer_count_trains_everything(models):
    model = models["vgg16"]
    assert len(set_trainable(model, 100)) == 19
    assert all(p.requires_grad for p in model.parameters())


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
