"""The seed's custom CNN: conv blocks whose filters double and whose dropout grows with depth.

``[Conv2d 3x3 (padding 1) -> BatchNorm -> ReLU -> MaxPool 2 -> Dropout] x depth -> Flatten ->
Linear(dense) -> ReLU -> Dropout -> Linear(num_classes)``.

- Filters: block i has ``filters * 2**i`` channels.
- Dropout ("progressive dropout"): block i drops ``dropout * (i + 1) / depth``, so the last block
  and the dense layer drop ``dropout``; early blocks, whose features are few and generic, drop less.
- MaxPool floors odd sizes, as Keras' default ``padding="valid"`` did in the seed:
  28 -> 14 -> 7 -> 3 -> 1 at depth 4. A depth that pools the image below 1 pixel is an error.

Seed configurations (filters, depth, dropout, dense): CNN_v1 32/3/0.5/512, CNN_v2 64/4/0.4/256,
CNN_v3 128/4/0.3/512.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dermascreen.models.keras_layers import KerasLayer, cnn_layers
from dermascreen.models.layers import FrozenBatchNormStats

DEFAULTS: dict[str, Any] = {"filters": 32, "depth": 3, "dropout": 0.5, "dense": 512, "image_size": 28}


def conv_block(in_channels: int, out_channels: int, dropout: float) -> nn.Sequential:
    # No conv bias: the BatchNorm right after it has its own shift.
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Dropout(dropout),
    )


class CNN(FrozenBatchNormStats, nn.Module):
    """(B, 3, image_size, image_size) -> logits (B, num_classes)."""

    def __init__(self, num_classes: int = 2, filters: int = 32, depth: int = 3, dropout: float = 0.5,
                 dense: int = 512, image_size: int = 28):
        super().__init__()
        side = image_size // 2 ** depth  # floor at every MaxPool
        if side < 1:
            raise ValueError(f"cnn depth {depth} pools a {image_size}x{image_size} image below 1 pixel; "
                             f"the largest depth for it is {image_size.bit_length() - 1}")
        widths = [3] + [filters * 2 ** i for i in range(depth)]
        self.backbone = nn.Sequential(*(
            conv_block(widths[i], widths[i + 1], dropout * (i + 1) / depth) for i in range(depth)))
        self.head = nn.Sequential(
            nn.Flatten(),  # flatten, not view: works on channels_last tensors
            nn.Linear(widths[-1] * side * side, dense),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(dense, num_classes),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))  # (B, C, side, side) -> (B, num_classes)

    def keras_layers(self) -> list[KerasLayer]:
        """The layers of the same model as a Keras Sequential, head included (``unfreeze`` counts them)."""
        return cnn_layers(self.backbone, self.head)


def build_cnn(config: dict[str, Any]) -> CNN:
    """CNN from a model config (keys of ``DEFAULTS`` plus ``num_classes``), values checked."""
    values = {key: config.get(key, default) for key, default in DEFAULTS.items()}
    for key in ("filters", "depth", "dense", "image_size"):
        if isinstance(values[key], bool) or not isinstance(values[key], int) or values[key] < 1:
            raise ValueError(f"cnn {key} must be a positive integer, got {values[key]!r}")
    dropout = values["dropout"]
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"cnn dropout must be in [0, 1), got {values['dropout']!r}")
    return CNN(num_classes=config.get("num_classes", 2), **values)
