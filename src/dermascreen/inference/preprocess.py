"""Turn users' image files into DermaMNIST-like uint8 arrays.

MedMNIST v2 built DermaMNIST from the HAM10000 dermatoscopic images by resizing each whole
3x600x450 source image to 3x28x28 (``medmnist.INFO["dermamnist"]["description"]``): no crop,
so the 4:3 image is squeezed to a square. The interpolation is not stated there; the
DermaMNIST-C/E re-creation by Abhishek et al. (2024) uses PIL ``Image.resize`` with
``Image.BICUBIC`` on the full image, which we follow (docs/inference.md says more).

Every input becomes 8-bit RGB first: 16-bit grayscale is scaled to 8 bits (PIL's own
``convert`` clips it, so a 16-bit image came out near white), palette and grayscale images are
expanded, and transparent pixels are composited over a background colour the caller chooses
(the CLI uses the training images' mean colour, ``background_colour``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
# Everything PIL raises for a file it cannot decode, plus OSError for unreadable files.
UNREADABLE = (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, SyntaxError)
# 16-bit grayscale in its byte orders (PNG and TIFF open as these).
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
# 32-bit integer or float pixels have no fixed range to map to 8 bits: refused, not guessed.
UNSUPPORTED_MODES = {"I": "32-bit integer", "F": "32-bit float"}
ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})


def load_image(path: str | Path, size: int, background: tuple[int, int, int]) -> np.ndarray:
    """(size, size, 3) uint8 RGB: EXIF orientation applied, converted by ``to_rgb``, whole image
    resized bicubically."""
    with Image.open(path) as image:
        # Phone photos store rotation in EXIF; MedMNIST's source images carry none.
        upright = to_rgb(ImageOps.exif_transpose(image), background)
        resized = upright.resize((size, size), resample=Image.Resampling.BICUBIC)
    return np.array(resized, dtype=np.uint8)  # a writable copy: torch.from_numpy warns on read-only


def to_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """8-bit RGB. 16-bit grayscale is scaled (65535 -> 255, rounded); transparency (an alpha
    channel, or a palette/grayscale image's transparent colour) is composited over ``background``."""
    if image.mode in UNSUPPORTED_MODES:
        raise ValueError(f"{UNSUPPORTED_MODES[image.mode]} pixels are not supported: save the image with "
                         "8 or 16 bits per channel")
    if image.mode in SIXTEEN_BIT_MODES:
        image = Image.fromarray(_sixteen_to_eight_bits(np.asarray(image)))
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        canvas = Image.new("RGBA", image.size, (*background, 255))
        return Image.alpha_composite(canvas, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def _sixteen_to_eight_bits(pixels: np.ndarray) -> np.ndarray:
    # round(v * 255 / 65535) in integers: v = 257 * w maps back to exactly w.
    return ((pixels.astype(np.uint32) * 255 + 65535 // 2) // 65535).astype(np.uint8)


def background_colour(normalization: dict) -> tuple[int, int, int]:
    """The training images' mean colour (uint8): normalised, it is zero, the input that tells the
    model least, so transparent areas add as little evidence either way as a colour can."""
    return tuple(int(round(255 * float(channel))) for channel in normalization["mean"])


def iter_image_files(inputs: Iterable[str | Path]) -> Iterator[Path]:
    """Files named directly (whatever their suffix), and image-suffixed files under named folders
    (recursively, in sorted order), yielded one at a time so callers can work in batches."""
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for root, files in _sorted_walk(path):
                for name in files:
                    if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                        yield root / name
        else:
            yield path


def _sorted_walk(folder: Path) -> Iterator[tuple[Path, list[str]]]:
    for root, dirs, files in os.walk(folder):
        dirs.sort()  # in place: os.walk then descends in sorted order
        yield Path(root), sorted(files)
