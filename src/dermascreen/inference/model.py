"""Rebuild a classifier from a checkpoint dict, with errors that say what is wrong.

A checkpoint is ``{"config", "state_dict", "normalization", ...}`` (docs/architecture.md). The
config alone rebuilds the architecture; the weights must then fit it exactly (``strict``), or
the model would silently run with random layers. A seed ensemble (``ensemble_checkpoint``: one
strategy trained with several seeds) is a checkpoint too: its ``members`` list says how many
copies of the config's model its ``state_dict`` holds, and it rebuilds as ``SeedEnsemble``.
"""

from __future__ import annotations

import hashlib

import torch

from dermascreen.models import build_model

REQUIRED_KEYS = ("config", "state_dict", "normalization")


class CheckpointError(ValueError):
    """A checkpoint that cannot become the model it describes; the message names it."""


class SeedEnsemble(torch.nn.Module):
    """Members of one architecture; the output is the log of their mean class probability, so its
    softmax (what ``predict_proba`` takes) is exactly that mean."""

    def __init__(self, members: list[torch.nn.Module]):
        super().__init__()
        self.members = torch.nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # double: the mean and the log add no rounding that predict_proba's double softmax would see
        proba = torch.stack([torch.softmax(member(x).double(), dim=1) for member in self.members]).mean(dim=0)
        return torch.log(proba)


def ensemble_checkpoint(members: list[dict], run: str) -> dict:
    """One checkpoint for the seed runs of one strategy (same config and normalization, seeds in
    ``training.seed``): the weights of ``SeedEnsemble`` under ``members.<i>.``, ``members`` =
    ``[{"run", "seed", "hardware"}]`` in order, the shared training settings without the seed."""
    first = members[0]
    for member in members[1:]:
        for key in ("config", "normalization", "class_weights"):
            if member[key] != first[key]:
                raise CheckpointError(f"seed runs {first['run']!r} and {member['run']!r} differ in {key}: "
                                      "an ensemble averages copies of one model")
    state_dict = {f"members.{i}.{name}": tensor for i, member in enumerate(members)
                  for name, tensor in member["state_dict"].items()}
    return {
        "run": run,
        "config": first["config"],
        "state_dict": state_dict,
        "normalization": first["normalization"],
        "training": {key: value for key, value in first["training"].items() if key != "seed"},
        "class_weights": first["class_weights"],
        "hardware": first["hardware"],
        "members": [{"run": m["run"], "seed": m["training"]["seed"], "hardware": m["hardware"]} for m in members],
    }


def ensemble_members(checkpoint: dict, name: str) -> dict[str, dict]:
    """``{member run: checkpoint}``: each seed's own model, as it was before ``ensemble_checkpoint``."""
    if "members" not in checkpoint:
        raise CheckpointError(f"{name}: not a seed ensemble (no 'members'); phase2 exports one per strategy")
    result = {}
    for i, member in enumerate(checkpoint["members"]):
        prefix = f"members.{i}."
        result[member["run"]] = {
            **{key: value for key, value in checkpoint.items() if key not in ("members", "state_dict")},
            "run": member["run"], "hardware": member["hardware"],
            "training": {**checkpoint["training"], "seed": member["seed"]},
            "state_dict": {key.removeprefix(prefix): tensor for key, tensor in checkpoint["state_dict"].items()
                           if key.startswith(prefix)},
        }
    return result


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
        if "members" in checkpoint:
            model = SeedEnsemble([model, *(build_model(checkpoint["config"]) for _ in checkpoint["members"][1:])])
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
