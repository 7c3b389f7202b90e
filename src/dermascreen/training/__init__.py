"""Training core: Ignite engines, ``fit`` / ``predict_proba``, devices, resumable checkpoints (docs/training.md)."""

from dermascreen.training.fit import DEFAULTS, FitResult, fit, predict_proba

__all__ = ["DEFAULTS", "FitResult", "fit", "predict_proba"]
