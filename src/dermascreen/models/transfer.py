"""Transfer-learning classifiers on timm backbones, as the seed's Keras models.

``image_size`` input -> nearest upsampling to ``input_size`` -> timm backbone (no classifier) ->
global average pool -> head ``Dropout -> Linear(dense) -> BatchNorm1d -> ReLU -> Dropout ->
Linear(num_classes)``. ``input_size`` defaults to ``backbone_input_size(image_size)``: 28x28
images are upsampled 2x to 56 (the seed's Keras ``UpSampling2D``), images of 56 and more go in at
their native size.

``weights``: ``none`` (random init), ``imagenet`` (timm's pretrained weights from the Hugging Face
hub or its local cache; see ``pretrained_backbone``), or a checkpoint path (loaded by the factory).
"""

from __future__ import annotations

import socket
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import urlparse

import timm
import torch
from huggingface_hub import constants as hub
import torch.nn.functional as F
from torch import nn

from dermascreen.models.keras_layers import KerasLayer, timm_layers
from dermascreen.models.layers import FrozenBatchNormStats

# input_size None: backbone_input_size(image_size).
DEFAULTS: dict[str, Any] = {"dense": 256, "dropout": 0.5, "image_size": 28, "input_size": None}
# The seed's backbone input: 28x28 DermaMNIST upsampled 2x by Keras UpSampling2D.
SEED_INPUT_SIZE = 56
HUB_PROBE_TIMEOUT_S = 3.0


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


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are neither in the local cache nor downloadable."""


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether the Hugging Face hub accepts a TCP connection within ``timeout`` seconds.

    Checked first because huggingface_hub retries an unreachable hub for about 45 s before giving up.
    """
    if hub.is_offline_mode():
        return False
    url = urlparse(hub.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


@contextmanager
def hub_offline(offline: bool) -> Iterator[None]:
    """Run huggingface_hub cache-only (as ``HF_HUB_OFFLINE=1``) inside the block when ``offline``."""
    saved = hub.HF_HUB_OFFLINE
    hub.HF_HUB_OFFLINE = saved or offline
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = saved


def pretrained_backbone(arch: str, timm_name: str) -> nn.Module:
    """timm's ImageNet weights, cache-only when the hub is unreachable (no retry loop)."""
    if hub.is_offline_mode():
        where, online = "HF_HUB_OFFLINE is set", False
    else:
        online = hub_reachable()
        where = f"the download from {hub.ENDPOINT} failed" if online else f"{hub.ENDPOINT} cannot be reached"
    try:
        with hub_offline(not online):
            return timm.create_model(timm_name, pretrained=True, num_classes=0)
    except OSError as error:  # huggingface_hub's download and cache errors are OSErrors
        raise WeightsUnavailableError(
            f"{arch}: ImageNet weights for timm model {timm_name!r} are not in the local cache "
            f"({hub.HF_HUB_CACHE}) and {where}: {type(error).__name__}. Fetch them on a connected machine "
            f"with `python -c \"import timm; timm.create_model('{timm_name}', pretrained=True)\"` and copy "
            f"that cache here, or use weights: none or a checkpoint path.") from error


def create_backbone(arch: str, weights: str) -> nn.Module:
    """timm backbone without classifier; ``weights == "imagenet"`` loads timm's pretrained weights."""
    spec = BACKBONES[arch]
    if weights == "imagenet":
        backbone = pretrained_backbone(arch, spec.timm_name)
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


def build_transfer(config: dict[str, Any]) -> TransferNet:
    """TransferNet for ``config["arch"]`` in ``BACKBONES``; keys of ``DEFAULTS`` plus the common ones."""
    values = {key: config.get(key, default) for key, default in DEFAULTS.items()}
    for key in ("dense", "image_size", "input_size"):
        if key == "input_size" and values[key] is None:
            values[key] = backbone_input_size(values["image_size"])
        if isinstance(values[key], bool) or not isinstance(values[key], int) or values[key] < 1:
            raise ValueError(f"{config['arch']} {key} must be a positive integer, got {values[key]!r}")
    dropout = values["dropout"]
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"{config['arch']} dropout must be in [0, 1), got {values['dropout']!r}")
    backbone = create_backbone(config["arch"], str(config.get("weights", "none")))
    return TransferNet(backbone, backbone.num_features, num_classes=config.get("num_classes", 2), dense=values["dense"],
                       dropout=values["dropout"], input_size=values["input_size"])
