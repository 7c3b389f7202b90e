"""A CIFAR-style ResNet for small images (He et al. 2016, section 4.2), sized for a CPU.

Unlike ImageNet ResNets (7x7 stride-2 stem + max pool, which leave a 28x28 image 7x7 before the
first block), the stem is one 3x3 convolution at full resolution, and each stage after the first
halves the side with a stride-2 block:

``Conv 3x3 -> BN -> ReLU -> [BasicBlock x blocks] per width -> global average pool -> Dropout ->
Linear(num_classes)``. A ``BasicBlock`` is ``conv3x3 -> BN -> ReLU -> conv3x3 -> BN``, plus a
shortcut (identity, or 1x1 conv + BN where the shape changes), then ReLU.

Defaults (widths 32/64/128, 2 blocks each): 0.70M parameters; 28 -> 28 -> 14 -> 7 -> 1 pixels.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dermascreen.models.keras_layers import KerasLayer, resnet_cifar_layers
from dermascreen.models.layers import FrozenBatchNormStats

DEFAULTS: dict[str, Any] = {"widths": [32, 64, 128], "blocks": 2, "dropout": 0.0, "image_size": 28}


class BasicBlock(nn.Module):
    """(B, C_in, H, W) -> (B, C_out, H / stride, W / stride)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        # No conv bias: the BatchNorm right after each conv has its own shift.
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_channels))
        self.act2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(out + shortcut)


class ResNetCifar(FrozenBatchNormStats, nn.Module):
    """(B, 3, image_size, image_size) -> logits (B, num_classes)."""

    def __init__(self, num_classes: int = 2, widths: list[int] | tuple[int, ...] = (32, 64, 128), blocks: int = 2,
                 dropout: float = 0.0, image_size: int = 28):
        super().__init__()
        if image_size // 2 ** (len(widths) - 1) < 1:
            raise ValueError(f"resnet_cifar: {len(widths)} stages halve a {image_size}x{image_size} image "
                             f"below 1 pixel; use fewer widths")
        stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]),
                             nn.ReLU(inplace=True))
        stages, channels = [], widths[0]
        for s, width in enumerate(widths):
            stage = [BasicBlock(channels if b == 0 else width, width, 2 if s > 0 and b == 0 else 1)
                     for b in range(blocks)]
            stages.append(nn.Sequential(*stage))
            channels = width
        # (B, 3, H, W) -> (B, widths[-1], H / 2**(stages-1), ...) -> (B, widths[-1])
        self.backbone = nn.Sequential(stem, *stages, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(widths[-1], num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))  # (B, widths[-1]) -> (B, num_classes)

    def keras_layers(self) -> list[KerasLayer]:
        """The same model as a Keras functional model, head included (``unfreeze`` counts them)."""
        return resnet_cifar_layers(self.backbone, self.head)


def build_resnet_cifar(config: dict[str, Any]) -> ResNetCifar:
    """ResNetCifar from a model config (keys of ``DEFAULTS`` plus ``num_classes``), values checked."""
    values = {key: config.get(key, default) for key, default in DEFAULTS.items()}
    widths = values["widths"]
    if (not isinstance(widths, (list, tuple)) or not widths
            or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths)):
        raise ValueError(f"resnet_cifar widths must be a list of positive integers, got {widths!r}")
    for key in ("blocks", "image_size"):
        if isinstance(values[key], bool) or not isinstance(values[key], int) or values[key] < 1:
            raise ValueError(f"resnet_cifar {key} must be a positive integer, got {values[key]!r}")
    dropout = values["dropout"]
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"resnet_cifar dropout must be in [0, 1), got {dropout!r}")
    return ResNetCifar(num_classes=config.get("num_classes", 2), **{**values, "widths": tuple(widths)})
