"""Transfer-learning classifiers on timm backbones, as the seed's Keras models.

``image_size`` input -> nearest upsampling to ``input_size`` -> timm backbone (no classifier) ->
global average pool -> head ``Dropout -> Linear(dense) -> BatchNorm1d -> ReLU -> Dropout ->
Linear(num_classes)``. ``input_size`` defaults to ``backbone_input_size(image_size)``: 28x28
images are upsampled 2x to 56 (the seed's Keras ``UpSampling2D``), images of 56 and more go in at
their native size.

``weights``: ``none`` (random init), ``imagenet`` (timm's pretrained weights from the local weights
directory, sha256-checked; see ``dermascreen.models.weights``), or a checkpoint path (loaded by the factory).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn

from dermascreen.models.keras_layers import KerasLayer, timm_layers
from dermascreen.models.layers import FrozenBatchNormStats
from dermascreen.models.weights import imagenet_backbone

# input_size None: backbone_input_size(image_size).
DEFAULTS: dict[str, Any] = {"dense": 256, "dropout": 0.5, "image_size": 28, "input_size": None}
# The seed's backbone input: 28x28 DermaMNIST upsampled 2x by Keras UpSampling2D.
SEED_INPUT_SIZE = 56


@dataclass(frozen=True)
class BackboneSpec:
    timm_name: str
    # timm's VGG keeps fc6/fc7 (as 7x7 and 1x1 convs, 119M parameters) in ``pre_logits``; the
    # seed's Keras VGG16(include_top=False) has no fully connected layers, so they are pruned.
    prune_pre_logits: bool = False


BACKBONES = {
    "resnet50": BackboneSpec("resnet50"),
    "vgg16": BackboneSpec("vgg16", prune_pre_logits=True),  # Keras VGG16 has no BatchNorm: not vgg16_bn
    "efficientnet_b0": BackboneSpec("efficientnet_b0"),
}


def create_backbone(arch: str, weights: str, weights_dir: str | os.PathLike | None = None) -> nn.Module:
    """timm backbone without classifier; ``weights == "imagenet"`` loads the file of ``weights_dir``."""
    spec = BACKBONES[arch]
    if weights == "imagenet":
        if weights_dir is None:
            raise ValueError(f"{arch} weights=imagenet: no weights directory given (parameter weights_dir; "
                             f"build_model(config, weights_dir=...))")
        backbone = imagenet_backbone(arch, weights_dir)
    else:
        backbone = timm.create_model(spec.timm_name, pretrained=False, num_classes=0)
    if spec.prune_pre_logits:
        backbone.prune_intermediate_layers(prune_head=True)
    return backbone


def backbone_input_size(image_size: int) -> int:
    """Side the backbone sees: 2x nearest upsampling below 56 (28 -> 56, as the seed), else native.

    At 28 the backbones' 32x downsampling would leave a 1x1 map (VGG: none); from 56 on the
    last map is at least 1x1 and upsampling adds no information, only compute (4x per doubling).
    """
    return 2 * image_size if image_size < SEED_INPUT_SIZE else image_size


class TransferNet(FrozenBatchNormStats, nn.Module):
    """(B, 3, H, W) normalised -> logits (B, num_classes) through a timm backbone."""

    def __init__(self, backbone: nn.Module, num_features: int, num_classes: int = 2, dense: int = 256,
                 dropout: float = 0.5, input_size: int = SEED_INPUT_SIZE):
        super().__init__()
        self.input_size = input_size
        self.backbone = backbone
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(num_features, dense, bias=False),  # BatchNorm1d right after has its own shift
            nn.BatchNorm1d(dense),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(dense, num_classes),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-2:] != (self.input_size, self.input_size):
            images = F.interpolate(images, size=(self.input_size, self.input_size), mode="nearest")
        features = self.backbone.forward_features(images)  # (B, F, h, w): h = w = 2 at 56x56
        return self.head(features.mean(dim=(2, 3)))  # global average pool -> (B, F) -> (B, num_classes)

    def keras_layers(self) -> list[KerasLayer]:
        """The backbone's layers as keras.applications lists them (``unfreeze`` counts them)."""
        return timm_layers(self.backbone, "backbone.")


def build_transfer(config: dict[str, Any], weights_dir: str | os.PathLike | None = None) -> TransferNet:
    """TransferNet for ``config["arch"]`` in ``BACKBONES``; keys of ``DEFAULTS`` plus the common ones.
    ``weights_dir``: where ``weights: imagenet`` reads its file (``dermascreen.models.weights``)."""
    values = {key: config.get(key, default) for key, default in DEFAULTS.items()}
    for key in ("dense", "image_size", "input_size"):
        if key == "input_size" and values[key] is None:
            values[key] = backbone_input_size(values["image_size"])
        if isinstance(values[key], bool) or not isinstance(values[key], int) or values[key] < 1:
            raise ValueError(f"{config['arch']} {key} must be a positive integer, got {values[key]!r}")
    dropout = values["dropout"]
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"{config['arch']} dropout must be in [0, 1), got {values['dropout']!r}")
    backbone = create_backbone(config["arch"], str(config.get("weights", "none")), weights_dir)
    return TransferNet(backbone, backbone.num_features, num_classes=config.get("num_classes", 2), dense=values["dense"],
                       dropout=values["dropout"], input_size=values["input_size"])
