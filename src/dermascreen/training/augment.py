"""The seed's Keras ``ImageDataGenerator`` augmentation, for a whole batch at once on its device.

Per image, independently: rotation uniform in [-rotation, rotation] degrees; shift uniform in
[-shift, shift] of the width (x) and of the height (y); zoom factors uniform in
[1 - zoom, 1 + zoom], drawn per axis as Keras does; horizontal and vertical flips with
probability 1/2 each. All of it is one affine matrix per image, applied by one ``affine_grid`` +
``grid_sample`` (bilinear, Keras' ``order=1``) per batch.

Geometry, in pixels with y pointing down, about the image centre: content is flipped, then
magnified by the zoom factors (> 1 enlarges), rotated by the angle (positive = counterclockwise
on screen), then moved by the shift (positive = right / down). With ``align_corners=False`` a
flip maps column c to W-1-c and a shift of k/W moves content by exactly k pixels.

Padding: ``border`` repeats the edge pixels into the area the transform uncovers, which is Keras'
default ``fill_mode="nearest"``. Skin around a lesion continues past the crop, so repeating it
is closer to the truth than black corners (``zeros``) or mirrored lesions (``reflection``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

PADDING_MODES = ("border", "zeros", "reflection")


@dataclass(frozen=True)
class AffineParams:
    """Per-image transform parameters, each (B,) or (B, 2) on the batch's device."""

    angle: torch.Tensor  # (B,) degrees, counterclockwise on screen
    shift: torch.Tensor  # (B, 2) (x, y) in fractions of width / height, positive right / down
    scale: torch.Tensor  # (B, 2) (x, y) magnification
    flip: torch.Tensor  # (B, 2) bool (horizontal, vertical)


def identity_params(batch: int, device: torch.device | str = "cpu") -> AffineParams:
    return AffineParams(angle=torch.zeros(batch, device=device), shift=torch.zeros(batch, 2, device=device),
                        scale=torch.ones(batch, 2, device=device),
                        flip=torch.zeros(batch, 2, dtype=torch.bool, device=device))


def affine_matrices(params: AffineParams, height: int, width: int) -> torch.Tensor:
    """(B, 2, 3) matrices for ``affine_grid``: output normalised coords -> input normalised coords.

    The content transform is p_out = R S F p_in + t in pixel units; ``affine_grid`` wants its
    inverse, p_in = F S^-1 R^-1 (p_out - t), expressed in [-1, 1] coordinates (x spans W pixels,
    y spans H pixels, so R is conjugated by diag(W, H) to stay a rotation on non-square images).
    """
    radians = params.angle.float() * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    aspect = height / width
    # R^-1 in normalised coordinates; a counterclockwise on-screen rotation with y down.
    inverse_rotation = torch.stack([
        torch.stack([cos, -sin * aspect], dim=-1),
        torch.stack([sin / aspect, cos], dim=-1),
    ], dim=-2)  # (B, 2, 2)
    signs = 1.0 - 2.0 * params.flip.float()  # (B, 2): -1 where flipped
    linear = (signs / params.scale.float())[..., None] * inverse_rotation  # F S^-1 R^-1, (B, 2, 2)
    translation = 2.0 * params.shift.float()  # fraction of the side -> normalised units
    offset = -(linear @ translation[..., None])  # (B, 2, 1)
    return torch.cat([linear, offset], dim=-1)


def warp(images: torch.Tensor, params: AffineParams, padding_mode: str = "border") -> torch.Tensor:
    """Apply ``params`` to a float batch (B, C, H, W); returns the same shape and dtype."""
    if not images.is_floating_point() or images.dim() != 4:
        raise ValueError(f"BatchAugment needs a float (B, C, H, W) batch, got {images.dtype} {tuple(images.shape)}")
    height, width = images.shape[-2:]
    theta = affine_matrices(params, height, width)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)  # (B, H, W, 2), float32
    # grid_sample wants one dtype; sample in float32 (bf16 grids are too coarse for 1-pixel accuracy).
    warped = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    return warped.to(images.dtype)


class BatchAugment(nn.Module):
    """Random rotation, shift, zoom and flips for a float batch on its own device (see module doc).

    Random numbers come from torch's global RNG on the batch's device, so ``torch.manual_seed``
    makes the output reproducible. In eval mode the module returns its input, as Dropout does.
    """

    def __init__(self, rotation: float = 20.0, shift: float = 0.15, zoom: float = 0.1, hflip: bool = True,
                 vflip: bool = True, padding_mode: str = "border"):
        super().__init__()
        if rotation < 0 or not 0 <= shift < 1 or not 0 <= zoom < 1:
            raise ValueError(f"BatchAugment needs rotation >= 0, 0 <= shift < 1, 0 <= zoom < 1; "
                             f"got rotation={rotation}, shift={shift}, zoom={zoom}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"BatchAugment padding_mode={padding_mode!r}: allowed values are {PADDING_MODES}")
        self.rotation, self.shift, self.zoom = float(rotation), float(shift), float(zoom)
        self.hflip, self.vflip, self.padding_mode = bool(hflip), bool(vflip), padding_mode

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> nn.Module:
        """``BatchAugment(**config)``; ``None``, ``{}`` or ``enabled: false`` give ``nn.Identity``."""
        config = dict(config or {})
        if not config or not config.pop("enabled", True):
            return nn.Identity()
        allowed = ("enabled", "rotation", "shift", "zoom", "hflip", "vflip", "padding_mode")
        unknown = sorted(set(config) - set(allowed))
        if unknown:
            raise ValueError(f"augmentation config has unknown key(s) {unknown}; allowed keys are {allowed}")
        return cls(**config)

    def sample(self, batch: int, device: torch.device | str) -> AffineParams:
        """Draw one set of parameters per image from the global RNG of ``device``."""
        def uniform(*shape: int, bound: float) -> torch.Tensor:
            return (torch.rand(*shape, device=device) * 2.0 - 1.0) * bound

        flip = torch.rand(batch, 2, device=device) < 0.5
        # in place, not `&= torch.tensor([...], device=device)`: a copy from the host would make
        # every CUDA step wait for the GPU
        if not self.hflip:
            flip[:, 0] = False
        if not self.vflip:
            flip[:, 1] = False
        return AffineParams(angle=uniform(batch, bound=self.rotation), shift=uniform(batch, 2, bound=self.shift),
                            scale=1.0 + uniform(batch, 2, bound=self.zoom), flip=flip)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return images
        return warp(images, self.sample(images.shape[0], images.device), self.padding_mode)

    def extra_repr(self) -> str:
        return (f"rotation={self.rotation}, shift={self.shift}, zoom={self.zoom}, hflip={self.hflip}, "
                f"vflip={self.vflip}, padding_mode={self.padding_mode!r}")
