"""Reconstruction figures: original / masked / reconstructed, learned masks beside random ones."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from dermascreen.models.vit import resize_to  # noqa: E402
from dermascreen.pretraining.engine import Pretrainer  # noqa: E402
from dermascreen.pretraining.mae import patchify, random_scores, unpatchify  # noqa: E402
from dermascreen.training.data import normalization_tensors, to_model_input  # noqa: E402


def _to_rgb(images: torch.Tensor, normalization: dict[str, list[float]]) -> np.ndarray:
    """Normalised (B, 3, H, W) -> displayable (B, H, W, 3) in [0, 1]."""
    mean = torch.tensor(normalization["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(normalization["std"]).view(1, 3, 1, 1)
    return (images.cpu() * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy()


def _panels(pretrainer: Pretrainer, images: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked input with grey holes, reconstruction with visible patches pasted back)."""
    mae = pretrainer.mae
    out = mae(images, scores)
    patch = mae.encoder.patch_size
    original = patchify(resize_to(images, mae.encoder.img_size), patch)
    keep = (1 - out.mask)[..., None]  # (B, N, 1)
    masked = unpatchify(original * keep, patch)  # zero = the train mean after de-normalising
    pasted = unpatchify(original * keep + patchify(mae.reconstruct(images, out), patch) * (1 - keep), patch)
    return masked, pasted


@torch.no_grad()
def reconstruction_figure(pretrainer: Pretrainer, images_uint8: np.ndarray, normalization: dict[str, list[float]],
                          method: str, learned: bool, seed: int = 0) -> Figure:
    """One row per image: original, masked and reconstructed with the method's mask, then, for a
    learned masking method, the same with MAE's random mask for comparison."""
    pretrainer.train(False)
    device = pretrainer.device
    images = to_model_input(torch.from_numpy(np.ascontiguousarray(images_uint8)).to(device),
                            *normalization_tensors(normalization, device), channels_last=False)
    columns = {"original": _to_rgb(resize_to(images, pretrainer.mae.encoder.img_size), normalization)}
    own = pretrainer.mask_scores(images, 1.0)
    variants = [(f"{method} mask", own)]
    if learned:
        generator = torch.Generator().manual_seed(seed)
        variants.append(("random mask", random_scores(len(images), pretrainer.mae.num_patches, generator).to(device)))
    for name, scores in variants:
        masked, pasted = _panels(pretrainer, images, scores)
        columns[name] = _to_rgb(masked, normalization)
        columns[f"reconstruction ({name})"] = _to_rgb(pasted, normalization)
    fig, axes = plt.subplots(len(images), len(columns), figsize=(1.6 * len(columns), 1.6 * len(images)),
                             squeeze=False)
    for col, (title, panel) in enumerate(columns.items()):
        axes[0, col].set_title(title, fontsize=7)
        for row in range(len(images)):
            axes[row, col].imshow(panel[row])
            axes[row, col].axis("off")
    fig.suptitle(f"{method}: masked patch reconstruction", fontsize=9)
    fig.tight_layout()
    return fig
