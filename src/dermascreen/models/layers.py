"""What "the last N layers" are when freezing part of a model, and how frozen BatchNorm stays frozen.

Layers are counted as the seed's Keras models counted them: every model lists its layers as
Keras would (``model.keras_layers()``, rules in ``models/keras_layers.py``), parameter-free ones
(input, paddings, activations, pooling, adds) included, each with the torch modules it stands
for. For the timm backbones and the ViT encoder the list covers the backbone, as the seed's
``base_model.layers`` did; for the custom CNN it covers the whole model, head included, as the
seed's single Sequential did.

Every model has a *backbone* (attribute ``backbone``, or ``encoder`` for the ViT) and a head
(everything else). ``set_trainable`` freezes the backbone except the parameters of the last N
Keras layers; the head always trains.
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

BACKBONE_ATTRIBUTES = ("backbone", "encoder")


def backbone_of(model: nn.Module) -> nn.Module:
    """The model's backbone (``model.backbone`` or ``model.encoder``)."""
    for name in BACKBONE_ATTRIBUTES:
        backbone = getattr(model, name, None)
        if isinstance(backbone, nn.Module):
            return backbone
    raise TypeError(f"{type(model).__name__} has no backbone: expected an attribute named one of "
                    f"{BACKBONE_ATTRIBUTES}")


def parse_unfreeze(unfreeze: int | str) -> int | str:
    """``0``, a positive int or ``"all"``; anything else is a ValueError."""
    if unfreeze == "all":
        return "all"
    if isinstance(unfreeze, bool) or not isinstance(unfreeze, int) or unfreeze < 0:
        raise ValueError(f"unfreeze must be 0, a positive number of layers or 'all', got {unfreeze!r}")
    return unfreeze


def set_trainable(model: nn.Module, unfreeze: int | str) -> list[str]:
    """Freeze the backbone except the parameters of its last ``unfreeze`` Keras layers.

    ``"all"``: nothing frozen. The head always trains. ``unfreeze`` larger than the number of
    layers unfreezes all of them, as the seed's Keras ``layers[-N:]`` did. Returns the names of
    the trainable Keras layers (``model.keras_layers()``), parameter-free ones included.
    """
    unfreeze = parse_unfreeze(unfreeze)
    layers = model.keras_layers()
    model.requires_grad_(True)
    if unfreeze == "all":
        return [layer.name for layer in layers]
    backbone_of(model).requires_grad_(False)
    trainable = layers[len(layers) - min(unfreeze, len(layers)):]
    for layer in trainable:
        for parameter in layer.parameters(model):
            parameter.requires_grad_(True)
    return [layer.name for layer in trainable]


def freeze_bn_stats(model: nn.Module) -> nn.Module:
    """Put every BatchNorm whose parameters are all frozen into eval mode; returns ``model``.

    A frozen BatchNorm must also stop updating its running statistics: otherwise the statistics of
    small training batches replace the ones its frozen weights (and the layers after it) were
    trained with, and the "frozen" features drift. Keras (the seed) does the same: a BatchNorm with
    ``trainable = False`` runs in inference mode. Call it after ``model.train()``.
    """
    for module in model.modules():
        parameters = list(module.parameters(recurse=False))
        if isinstance(module, _BatchNorm) and parameters and not any(p.requires_grad for p in parameters):
            module.eval()
    return model


class FrozenBatchNormStats:
    """Mixin for nn.Module subclasses: ``train()`` keeps frozen BatchNorm layers in eval mode."""

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            freeze_bn_stats(self)
        return self
