"""Turn users' image files into DermaMNIST-like uint8 arrays.

MedMNIST v2 built DermaMNIST from the HAM10000 dermatoscopic images by resizing each whole
3x600x450 source image to 3x28x28 (``medmnist.INFO["dermamnist"]["description"]``): no crop,
so the 4:3 image is squeezed to a square. The interpolation is not stated there; the
DermaMNIST-C/E re-creation by Abhishek et al. (2024) uses PIL ``Image.resize`` with
``Image.BICUBIC`` on the full image, which we follow (docs/inference.md says more).
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


def load_image(path: str | Path, size: int = 28) -> np.ndarray:
    """(size, size, 3) uint8 RGB: EXIF orientation applied, whole image resized bicubically."""
    with Image.open(path) as image:
        # Phone photos store rotation in EXIF; MedMNIST's source images carry none.
        upright = ImageOps.exif_transpose(image).convert("RGB")
        resized = upright.resize((size, size), resample=Image.Resampling.BICUBIC)
    return np.array(resized, dtype=np.uint8)  # a writable copy: torch.from_numpy warns on read-only


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
