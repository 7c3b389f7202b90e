"""Read and check the raw DermaMNIST arrays before anything is derived from them."""

from __future__ import annotations

import zipfile

import numpy as np

from dermascreen.data.errors import DataError
from dermascreen.data.medmnist_info import SPLITS, class_names, split_sizes

EXPECTED_KEYS = tuple(f"{split}_{kind}" for split in SPLITS for kind in ("images", "labels"))


def read_raw_npz(path, name=None) -> dict[str, np.ndarray]:
    """All arrays of a raw ``.npz``; a truncated or corrupt file is a ``DataError`` naming it
    (as ``name`` when given: a temporary copy is reported as the file it was copied from)."""
    name = name or path
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except FileNotFoundError:
        raise DataError(f"{name}: file not found") from None
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError) as error:
        raise DataError(f"{name}: not a readable .npz archive (truncated or corrupt?): {error}") from None


def validate_raw(arrays: dict[str, np.ndarray], size: int, path: str,
                 expected_sizes: dict[str, int] | None = None) -> None:
    """Raise ``DataError`` naming ``path``, the key and the problem unless the arrays are DermaMNIST.

    ``expected_sizes`` defaults to the split sizes in ``medmnist.INFO``.
    """
    missing = [key for key in EXPECTED_KEYS if key not in arrays]
    if missing:
        raise DataError(f"{path}: missing key(s) {missing}; found {sorted(arrays)}")
    expected_sizes = expected_sizes or split_sizes()
    num_classes = len(class_names())
    for split in SPLITS:
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        key = f"{split}_images"
        if images.ndim != 4 or images.shape[1:] != (size, size, 3):
            raise DataError(f"{path}: {key} has shape {images.shape}, expected (N, {size}, {size}, 3)")
        if images.dtype != np.uint8:
            raise DataError(f"{path}: {key} has dtype {images.dtype}, expected uint8")
        if len(images) == 0:
            raise DataError(f"{path}: {key} is empty")
        key = f"{split}_labels"
        if labels.shape not in ((len(images),), (len(images), 1)):
            raise DataError(f"{path}: {key} has shape {labels.shape}, expected ({len(images)}, 1)")
        if not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"{path}: {key} has dtype {labels.dtype}, expected an integer type")
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise DataError(
                f"{path}: {key} has labels in [{labels.min()}, {labels.max()}], expected 0..{num_classes - 1}"
            )
        if len(images) != expected_sizes[split]:
            raise DataError(
                f"{path}: {split} split has {len(images)} images, medmnist.INFO says {expected_sizes[split]}"
            )
