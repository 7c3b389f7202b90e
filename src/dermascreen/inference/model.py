"""Rebuild a classifier from a checkpoint dict, with errors that say what is wrong.

A checkpoint is ``{"config", "state_dict", "normalization", ...}`` (docs/architecture.md). The
config alone rebuilds the architecture; the weights must then fit it exactly (``strict``), or
the model would silently run with random layers.
"""

from __future__ import annotations

import hashlib

import torch

from dermascreen.models import build_model

REQUIRED_KEYS = ("config", "state_dict", "normalization")


class CheckpointError(ValueError):
    """A checkpoint that cannot become the model it describes; the message names it."""


def model_from_checkpoint(checkpoint: dict, name: str) -> torch.nn.Module:
    """The model in eval mode; ``name`` (a file or catalog entry) goes into every error."""
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{name}: expected a checkpoint dict, got {type(checkpoint).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        keys = [str(key) for key in checkpoint]
        shown = keys[:8] + ([f"... {len(keys) - 8} more"] if len(keys) > 8 else [])  # a bare state dict has hundreds
        raise CheckpointError(f"{name}: checkpoint lacks {missing}; it has {shown}")
    try:
        model = build_model(checkpoint["config"])
    except (KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f"{name}: its model config cannot be built ({error}): {checkpoint['config']}") from error
    try:
        model.load_state_dict(checkpoint["state_dict"], strict=True)
    except RuntimeError as error:
        # torch lists every missing/unexpected key and size mismatch; keep its text, on one line.
        raise CheckpointError(
            f"{name}: the weights do not match the model config {checkpoint['config']}: {' '.join(str(error).split())}"
        ) from error
    return model.eval()


def state_dict_fingerprint(state_dict: dict) -> str:
    """sha256 over parameter names, shapes and bytes: ties a threshold file to one model's weights."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        # bytes through a uint8 view: works for every dtype, bfloat16 included (numpy has none)
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
