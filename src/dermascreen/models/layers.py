"""What a "layer" is when freezing part of a model, and how frozen BatchNorm stays frozen.

A *layer* is a module that owns parameters itself (``parameters(recurse=False)`` is not empty):
Conv2d, BatchNorm, Linear, LayerNorm, or a container holding a bare ``nn.Parameter`` such as a
ViT's [CLS] token. Layers are listed in ``named_modules()`` order, which is definition order and,
for the timm ResNet/VGG/EfficientNet backbones and the CNN here, forward order. Keras counts
parameter-free layers too (activations, pooling, padding, adds, the input); they cannot be
trained, so they do not count here (docs/models.md maps the seed's numbers).

Every model has a *backbone* (attribute ``backbone``, or ``encoder`` for the ViT) and a head
(everything else). ``set_trainable`` freezes the backbone except its last N layers; the head
always trains.
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


def backbone_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every backbone layer, first to last (see the module docstring)."""
    return [(name, module) for name, module in backbone_of(model).named_modules()
            if next(module.parameters(recurse=False), None) is not None]


def parse_unfreeze(unfreeze: int | str) -> int | str:
    """``0``, a positive int or ``"all"``; anything else is a ValueError."""
    if unfreeze == "all":
        return "all"
    if isinstance(unfreeze, bool) or not isinstance(unfreeze, int) or unfreeze < 0:
        raise ValueError(f"unfreeze must be 0, a positive number of layers or 'all', got {unfreeze!r}")
    return unfreeze


def set_trainable(model: nn.Module, unfreeze: int | str) -> list[str]:
    """Freeze the backbone except its last ``unfreeze`` layers (``"all"``: nothing frozen).

    The head always trains. ``unfreeze`` larger than the number of layers unfreezes all of them,
    as the seed's Keras ``layers[-N:]`` did. Returns the names of the trainable backbone layers.
    """
    unfreeze = parse_unfreeze(unfreeze)
    model.requires_grad_(True)
    if unfreeze == "all":
        return [name for name, _ in backbone_layers(model)]
    layers = backbone_layers(model)
    backbone_of(model).requires_grad_(False)
    trainable = layers[len(layers) - min(unfreeze, len(layers)):]
    for _, layer in trainable:
        for parameter in layer.parameters(recurse=False):
            parameter.requires_grad_(True)
    return [name for name, _ in trainable]


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
