"""Model zoo: ``build_model(config)`` for every architecture, and freezing helpers (docs/models.md)."""

from dermascreen.models.factory import ARCHS, build_model, load_weights
from dermascreen.models.layers import backbone_layers, freeze_bn_stats, set_trainable
from dermascreen.models.weights import WeightsUnavailableError

__all__ = ["ARCHS", "build_model", "load_weights", "backbone_layers", "freeze_bn_stats", "set_trainable",
           "WeightsUnavailableError"]
