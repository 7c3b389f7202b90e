import json

import numpy as np
import pytest
from kedro.io import DatasetError
from kedro.runner import SequentialRunner

from project_helpers import project_catalog, synthetic_raw
from dermascreen.data.acquire import md5sum
from dermascreen.data.errors import DataAcquisitionError, DataError
from dermascreen.datasets import DermaMNISTDataset
from dermascreen.errors import find_user_error
from dermascreen.pipelines.data_engineering import create_pipeline
from dermascreen.pipelines.data_engineering import nodes

PARAMS = {"image_size": 28, "seed": 0, "samples_per_class": 2,
          "class_weight_strategies": {"W0": None, "W3": {0: 1, 1: 3}, "balanced": "balanced"}}


def test_split_dataset_keeps_uint8_and_maps_binary_by_name():
    arrays = synthetic_raw({"train": 14, "val": 7, "test": 7})
    train, val, test = nodes.split_dataset(arrays)
    assert train["images"].dtype == np.uint8 and train["images"].shape == (14, 28, 28, 3)
    assert train["labels"].dtype == np.int64 and train["labels"].shape == (14,)
    expected = np.isin(train["labels"], [0, 1, 4]).astype(np.int64)  # akiec, bcc, mel
    np.testing.assert_array_equal(train["binary"], expected)
    assert len(val["labels"]) == 7 and len(test["labels"]) == 7


def test_normalization_uses_train_pixels_per_channel():
    images = np.zeros((2, 2, 2, 3), dtype=np.uint8)
    images[..., 0] = 255
    images[0, ..., 1] = 255
    stats = nodes.compute_normalization({"images": images})
    assert stats["mean"] == pytest.approx([1.0, 0.5, 0.0])
    assert stats["std"] == pytest.approx([0.0, 0.5, 0.0])


def test_describe_classes_counts_every_split():
    arrays = synthetic_raw({"train": 14, "val": 7, "test": 7})
    stats = nodes.describe_classes(arrays)
    assert stats["splits"]["train"]["counts"] == {n: 2 for n in stats["classes"]}
    assert stats["splits"]["val"]["binary_counts"] == {"benign": 4, "malignant": 3}


def test_validation_error_names_the_file():
    arrays = synthetic_raw({"train": 3, "val": 3, "test": 3})
    raw = {"arrays": arrays, "provenance": {"path": "data/01_raw/dermamnist_28.npz"}}
    with pytest.raises(DataError, match="data/01_raw/dermamnist_28.npz: train split has 3 images"):
        nodes.validate_raw_data(raw, PARAMS)


def test_report_says_non_official():
    arrays = synthetic_raw({"train": 14, "val": 7, "test": 7})
    report = nodes.render_data_report(
        nodes.describe_classes(arrays),
        {"path": "x.npz", "md5": "abc", "official": False, "official_md5": "def", "size": 28, "source": "s"},
        {"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}, {"W0": [1.0, 1.0]}, "quick",
    )
    assert "**non-official copy**" in report and "md5 `abc`" in report
    assert "`kedro run --pipelines data_engineering --env quick`" in report


def run_pipeline(tmp_path, local_file, pipeline=None):
    catalog = project_catalog(tmp_path, env="tiny", local_file=str(local_file))
    SequentialRunner().run(pipeline or create_pipeline(), catalog)
    return tmp_path / "data"


def test_pipeline_through_kedro_runner(tmp_path):
    source = tmp_path / "source.npz"
    np.savez(source, **synthetic_raw())
    data = run_pipeline(tmp_path / "project", source)
    assert (data / "01_raw" / "dermamnist_28.npz").read_bytes() == source.read_bytes()
    for name in ("train", "val", "test"):
        assert (data / "05_model_input" / f"{name}.npz").is_file()
    assert json.loads((data / "02_intermediate" / "data_provenance.json").read_text())["official"] is False
    assert (data / "08_reporting" / "data" / "samples.png").stat().st_size > 1000
    assert "non-official" in (data / "08_reporting" / "data_report.md").read_text()


def test_refused_file_never_sticks_and_the_corrected_file_runs(tmp_path):
    """Broken file (float images) refused with nothing written, then the corrected file runs."""
    broken, good = tmp_path / "broken.npz", tmp_path / "good.npz"
    arrays = synthetic_raw()
    np.savez(good, **arrays)
    np.savez(broken, **{**arrays, "train_images": arrays["train_images"].astype(np.float32)})
    with pytest.raises(DatasetError) as refused:
        run_pipeline(tmp_path / "project", broken)
    assert isinstance(find_user_error(refused.value), DataAcquisitionError)
    assert f"refused: {broken}: train_images has dtype float32" in str(refused.value)
    data = tmp_path / "project" / "data"
    assert list((data / "01_raw").iterdir()) == []
    assert not (data / "05_model_input").exists() and not (data / "08_reporting").exists()

    run_pipeline(tmp_path / "project", good)
    assert (data / "01_raw" / "dermamnist_28.npz").read_bytes() == good.read_bytes()
    assert (data / "05_model_input" / "train.npz").is_file()


def test_changed_local_file_replaces_the_copy(tmp_path):
    first, second = tmp_path / "first.npz", tmp_path / "second.npz"
    np.savez(first, **synthetic_raw(seed=0))
    np.savez(second, **synthetic_raw(seed=1))
    acquisition = create_pipeline().only_nodes("validate_raw_data")  # what reads the raw file
    run_pipeline(tmp_path / "project", first, acquisition)
    data = run_pipeline(tmp_path / "project", second, acquisition)
    assert (data / "01_raw" / "dermamnist_28.npz").read_bytes() == second.read_bytes()
    provenance = json.loads((data / "02_intermediate" / "data_provenance.json").read_text())
    assert provenance["md5"] == md5sum(second) and provenance["source"] == f"local file {second.name}"


def test_broken_copy_put_in_raw_by_hand_names_the_fix(tmp_path):
    arrays = synthetic_raw()
    arrays["val_labels"][5] = 9
    raw = tmp_path / "project" / "data" / "01_raw" / "dermamnist_28.npz"
    raw.parent.mkdir(parents=True)
    np.savez(raw, **arrays)
    catalog = project_catalog(tmp_path / "project", env="tiny")
    catalog["dermamnist_raw"] = DermaMNISTDataset(str(raw), 28, None)
    with pytest.raises(DataError, match=r"dermamnist_28.npz: val_labels has labels in \[0, 9\], "
                                        r"expected 0..6. Fix: set DERMAMNIST_NPZ"):
        SequentialRunner().run(create_pipeline(), catalog)
    assert not (tmp_path / "project" / "data" / "05_model_input").exists()


def test_real_file_counts(tmp_path, real_npz):
    data = run_pipeline(tmp_path, real_npz)
    stats = json.loads((data / "08_reporting" / "class_statistics.json").read_text())
    binary = {split: stats["splits"][split]["binary_counts"] for split in ("train", "val", "test")}
    assert binary == {"train": {"benign": 5641, "malignant": 1366},
                      "val": {"benign": 807, "malignant": 196},
                      "test": {"benign": 1613, "malignant": 392}}
    assert list(stats["splits"]["train"]["counts"].values()) == [228, 359, 769, 80, 779, 4693, 99]
    assert list(stats["splits"]["test"]["counts"].values()) == [66, 103, 220, 23, 223, 1341, 29]
    norm = json.loads((data / "05_model_input" / "normalization.json").read_text())
    assert norm["mean"] == pytest.approx([0.7631, 0.5381, 0.5614], abs=1e-3)
