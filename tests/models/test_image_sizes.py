"""Every `base` architecture takes every image size the README promises (28, 64, 128, 224).

Shapes only, on the meta device (no memory, no arithmetic): a size that a model cannot take
fails there as it would on a GPU. The ViT, whose drop-path schedule reads values, runs for real.
Real training at these sizes: tests/pipelines/test_base_configs.py.
"""

from __future__ import annotations

import pytest
import torch

from project_helpers import load_config
from dermascreen.models import build_model

SIZES = (28, 64, 128, 224)
# 28 is upsampled 2x as the seed did; from 56 on the backbone sees the native size.
BACKBONE_INPUT = {28: 56, 64: 64, 128: 128, 224: 224}
OWN_ARCHS = ("cnn", "resnet_cifar")  # this project's models: they take the image at its size


def base_architectures() -> dict[str, dict]:
    """Every CNN and CIFAR ResNet of `base` and the first config of each timm arch (the others differ
    in the head only)."""
    architectures = load_config("base", "parameters")["phase1"]["architectures"]
    chosen, seen = {}, set()
    for name, spec in architectures.items():
        arch = spec["model"]["arch"]
        if arch == "vit" or (arch not in OWN_ARCHS and arch in seen):
            continue
        seen.add(arch)
        chosen[name] = {**spec["model"], "weights": "none"}
    return chosen


@pytest.mark.parametrize("size", SIZES)
def test_every_base_architecture_maps_every_size_to_logits(size):
    images = torch.zeros(2, 3, size, size, device="meta")
    for name, config in base_architectures().items():
        with torch.device("meta"):
            model = build_model({**config, "image_size": size})
        assert model(images).shape == (2, 2), name
        if config["arch"] not in OWN_ARCHS:  # the timm archs: resized to the backbone's input
            assert model.input_size == BACKBONE_INPUT[size], name
            features = model.backbone.forward_features(torch.zeros(1, 3, model.input_size, model.input_size,
                                                                   device="meta"))
            assert min(features.shape[-2:]) >= 1, name


@pytest.mark.parametrize("size", SIZES)
def test_the_vit_resizes_every_size_to_its_own(size):
    encoder = load_config("base", "parameters")["pretraining"]["shared"]["encoder"]
    model = build_model({"arch": "vit", **encoder, "image_size": size})
    images = torch.rand(2, 3, size, size)
    assert model(images).shape == (2, 2)
    assert model.encoder.patch_tokens(images).shape[1] == (encoder["img_size"] // encoder["patch_size"]) ** 2


def test_cnn_dense_layer_follows_the_image_size():
    # CNN_v1: 128 channels after 3 pools; the flattened side is image_size // 8
    for size, side in ((28, 3), (64, 8), (224, 28)):
        with torch.device("meta"):
            model = build_model({"arch": "cnn", "filters": 32, "depth": 3, "dense": 512, "image_size": size})
        assert model.head[1].in_features == 128 * side * side
