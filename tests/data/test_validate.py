"""Every kind of bad raw input gets an error naming the file, the key and the problem."""

import numpy as np
import pytest

from project_helpers import synthetic_raw
from dermascreen.data.errors import DataError
from dermascreen.data.validate import read_raw_npz, validate_raw

SMALL = {"train": 14, "val": 7, "test": 7}


def check(arrays, match):
    with pytest.raises(DataError, match=match) as info:
        validate_raw(arrays, 28, "raw.npz", expected_sizes=SMALL)
    assert "raw.npz" in str(info.value)


def test_valid_arrays_pass():
    validate_raw(synthetic_raw(SMALL), 28, "raw.npz", expected_sizes=SMALL)


def test_full_size_synthetic_matches_medmnist_info():
    validate_raw(synthetic_raw(), 28, "raw.npz")


def test_missing_key():
    arrays = synthetic_raw(SMALL)
    del arrays["val_labels"]
    check(arrays, r"missing key\(s\) \['val_labels'\]")


def test_wrong_dtype():
    arrays = synthetic_raw(SMALL)
    arrays["train_images"] = arrays["train_images"].astype(np.float32)
    check(arrays, "train_images has dtype float32, expected uint8")


def test_wrong_image_shape():
    arrays = synthetic_raw(SMALL)
    arrays["test_images"] = arrays["test_images"][:, :, :, :1]
    check(arrays, r"test_images has shape \(7, 28, 28, 1\)")


def test_wrong_image_size_for_the_requested_size():
    with pytest.raises(DataError, match=r"expected \(N, 64, 64, 3\)"):
        validate_raw(synthetic_raw(SMALL), 64, "raw.npz", expected_sizes=SMALL)


def test_label_out_of_range():
    arrays = synthetic_raw(SMALL)
    arrays["val_labels"][0] = 7
    check(arrays, r"val_labels has labels in \[0, 7\], expected 0..6")


def test_label_count_differs_from_images():
    arrays = synthetic_raw(SMALL)
    arrays["train_labels"] = arrays["train_labels"][:-1]
    check(arrays, r"train_labels has shape \(13, 1\), expected \(14, 1\)")


def test_empty_split():
    arrays = synthetic_raw(SMALL)
    arrays["test_images"] = arrays["test_images"][:0]
    arrays["test_labels"] = arrays["test_labels"][:0]
    check(arrays, "test_images is empty")


def test_split_size_differs_from_medmnist_info():
    with pytest.raises(DataError, match="train split has 14 images, medmnist.INFO says 7007"):
        validate_raw(synthetic_raw(SMALL), 28, "raw.npz")


def test_truncated_npz(tmp_path):
    path = tmp_path / "dermamnist.npz"
    np.savez(path, **synthetic_raw(SMALL))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="dermamnist.npz: not a readable .npz archive"):
        read_raw_npz(path)


def test_not_an_npz(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("hello")
    with pytest.raises(DataError, match="notes.npz: not a readable .npz archive"):
        read_raw_npz(path)
