"""Pretraining augmentation as in the official codes, for a whole batch at once on its device.

- ``resized_crop`` (MAE, U-MAE, SemMAE, AutoMAE; facebookresearch/mae ``main_pretrain.py``):
  ``RandomResizedCrop(input_size, scale=(0.2, 1.0))`` (aspect ratio in [3/4, 4/3], ten tries,
  else the whole image) + ``RandomHorizontalFlip``. Crop boxes are continuous (torchvision rounds
  them to whole pixels) and the crop is resized to the encoder's input size in the same bilinear
  sample.
- ``crop`` (MLO-MAE; Alexiland/MLO-MAE ``main_cifar10.py``): ``RandomCrop(32, padding=4)`` +
  ``RandomHorizontalFlip`` on the image resized to the encoder's input size (32, CIFAR's side):
  a shift of -4..4 whole pixels per axis, the uncovered border black (torchvision pads the
  pixels with 0 before normalising).
- ``none``: the images as they are (the encoder resizes them).

As ``training.augment``, every image's transform is one matrix and a batch is one
``affine_grid`` + ``grid_sample``. The random numbers are drawn on the CPU from the generator the
caller passes, so a run is reproducible from it: the engine seeds one per (seed, epoch) and
MLO-MAE's labelled batches use the pretrainer's own (saved with its state), so a resumed run
draws what an uninterrupted one would.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from dermascreen.models.vit import resize_to
from dermascreen.training.data import normalization_tensors

KINDS = ("resized_crop", "crop", "none")
SETTINGS = ("official", "none")  # the config key pretraining.shared.pretrain.augment
SCALE, RATIO, TRIES = (0.2, 1.0), (3 / 4, 4 / 3), 10  # torchvision RandomResizedCrop as MAE uses it
PADDING = 4  # MLO-MAE's RandomCrop(32, padding=4)


def official_kind(method: str) -> str:
    """The augmentation the official code of ``method`` pretrains with."""
    return "crop" if method == "mlo_mae" else "resized_crop"


def resolve_kind(setting: str, method: str) -> str:
    """``pretraining.shared.pretrain.augment`` (``official`` or ``none``) -> a kind of ``KINDS``."""
    if setting not in SETTINGS:
        raise ValueError(f"pretraining.shared.pretrain.augment is {setting!r}; allowed values are {SETTINGS} "
                         f"(conf/<env>/parameters_pretraining.yml)")
    return official_kind(method) if setting == "official" else "none"


def resized_crop_boxes(batch: int, generator: torch.Generator) -> torch.Tensor:
    """(B, 4) boxes (x0, y0, w, h) in fractions of the side, drawn as ``RandomResizedCrop``:
    the first of ten (area, log-ratio) draws that fits, else the whole image."""
    area = torch.empty(batch, TRIES).uniform_(*SCALE, generator=generator)
    ratio = torch.exp(torch.empty(batch, TRIES).uniform_(math.log(RATIO[0]), math.log(RATIO[1]),
                                                          generator=generator))
    w, h = torch.sqrt(area * ratio), torch.sqrt(area / ratio)
    fits = (w <= 1) & (h <= 1)
    first = fits.int().argmax(dim=1, keepdim=True)
    any_fit = fits.any(dim=1)
    w = torch.where(any_fit, w.gather(1, first)[:, 0], torch.ones(batch))
    h = torch.where(any_fit, h.gather(1, first)[:, 0], torch.ones(batch))
    corner = torch.rand(batch, 2, generator=generator)
    return torch.stack([corner[:, 0] * (1 - w), corner[:, 1] * (1 - h), w, h], dim=1)


class Augment:
    """``(images (B, 3, H, W) normalised, generator) -> (B, 3, S, S)``, S the encoder's input size."""

    def __init__(self, kind: str, size: int, normalization: dict[str, list[float]]):
        if kind not in KINDS:
            raise ValueError(f"unknown pretraining augmentation {kind!r}; expected one of {KINDS}")
        self.kind, self.size = kind, size
        mean, std = normalization_tensors(normalization, torch.device("cpu"))
        self.black = -mean / std  # (1, 3, 1, 1): pixel value 0 after normalisation

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.kind == "none":
            return images
        batch = images.shape[0]
        flip = 1.0 - 2.0 * (torch.rand(batch, generator=generator) < 0.5).float()  # -1 where flipped
        theta = torch.zeros(batch, 2, 3)
        if self.kind == "resized_crop":
            x0, y0, w, h = resized_crop_boxes(batch, generator).unbind(1)
            # output [-1, 1] -> the box, in affine_grid's normalised input coordinates
            theta[:, 0, 0], theta[:, 0, 2] = flip * w, 2 * x0 + w - 1
            theta[:, 1, 1], theta[:, 1, 2] = h, 2 * y0 + h - 1
            source = images
        else:
            images = resize_to(images, self.size)
            shift = torch.randint(-PADDING, PADDING + 1, (batch, 2), generator=generator).float()
            theta[:, 0, 0], theta[:, 1, 1] = flip, 1.0
            theta[:, :, 2] = 2 * shift / self.size  # whole pixels: align_corners=False samples centres
            black = self.black.to(images.device, non_blocking=True)
            source = images - black  # zeros padding -> black once added back
        grid = F.affine_grid(theta.to(images.device, non_blocking=True), [batch, 3, self.size, self.size],
                             align_corners=False)
        # a box's edge pixels sample up to half a pixel past the image: border repeats them
        padding = "border" if self.kind == "resized_crop" else "zeros"
        out = F.grid_sample(source.float(), grid, mode="bilinear", padding_mode=padding, align_corners=False)
        return out if self.kind == "resized_crop" else out + black


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The engine's augmentation generator for ``epoch`` (0-based): a function of (seed, epoch) alone,
    its own stream (the batch order uses ``seed + epoch``)."""
    state = np.random.SeedSequence([seed, epoch, 0x617567]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))
