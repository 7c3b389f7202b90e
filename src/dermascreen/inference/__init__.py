"""Apply the final model to users' own images (library; the CLI is ``dermascreen.inference.cli``)."""

from dermascreen.inference.model import (CheckpointError, SeedEnsemble, ensemble_checkpoint, ensemble_members,
                                         model_from_checkpoint, state_dict_fingerprint)
from dermascreen.inference.predict import predict_files, write_predictions
from dermascreen.inference.preprocess import iter_image_files, load_image

__all__ = [
    "CheckpointError", "SeedEnsemble", "ensemble_checkpoint", "ensemble_members", "iter_image_files", "load_image",
    "model_from_checkpoint", "predict_files", "state_dict_fingerprint", "write_predictions",
]
