"""Model zoo: ``build_model(config)`` for every architecture, and freezing helpers (docs/models.md)."""

from dermascreen.models.factory import ARCHS, build_model, load_weights
from dermascreen.models.keras_layers import KerasLayer
from dermascreen.models.layers import freeze_bn_stats, set_trainable
from dermascreen.models.weights import WeightsUnavailableError

__all__ = ["ARCHS", "build_model", "load_weights", "KerasLayer", "freeze_bn_stats", "set_trainable",
           "WeightsUnavailableError"]
