"""The project's Kedro datasets: atomic round trips, clear errors, kedro-viz previews."""

import base64

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from kedro.io import DatasetError  # noqa: E402

from dermascreen.datasets import CSVDataset, FigureDataset, JSONDataset, NpzDataset, TorchDataset  # noqa: E402


def test_json_round_trip_writes_nan_as_null_and_previews(tmp_path):
    dataset = JSONDataset(str(tmp_path / "m.json"))
    dataset.save({"a": 1.5, "b": float("nan"), "c": np.float32(2.0)})
    assert dataset.load() == {"a": 1.5, "b": None, "c": 2.0}
    assert '"a": 1.5' in dataset.preview()
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temporary file left


def test_json_corrupt_file_names_the_file(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DatasetError, match="bad.json: not valid JSON"):
        JSONDataset(str(tmp_path / "bad.json")).load()


def test_csv_round_trip_and_table_preview(tmp_path):
    dataset = CSVDataset(str(tmp_path / "t.csv"))
    frame = pd.DataFrame({"run": ["a", "b"], "recall": [0.5, 0.75]})
    dataset.save(frame)
    pd.testing.assert_frame_equal(dataset.load(), frame)
    assert dataset.preview(nrows=1) == {"index": [0], "columns": ["run", "recall"], "data": [["a", 0.5]]}


def test_figure_is_saved_as_png_and_previewed(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    dataset = FigureDataset(str(tmp_path / "f.png"))
    dataset.save(fig)
    assert base64.b64decode(dataset.preview())[:8] == b"\x89PNG\r\n\x1a\n"


def test_npz_round_trip_and_corrupt_file(tmp_path):
    dataset = NpzDataset(str(tmp_path / "s.npz"))
    dataset.save({"images": np.zeros((2, 3), np.uint8), "labels": np.arange(2)})
    loaded = dataset.load()
    assert loaded["images"].dtype == np.uint8 and loaded["labels"].tolist() == [0, 1]
    (tmp_path / "s.npz").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="s.npz: not a readable .npz file"):
        dataset.load()


def test_torch_checkpoint_round_trip_and_corrupt_file(tmp_path):
    import torch

    dataset = TorchDataset(str(tmp_path / "m.pt"))
    dataset.save({"config": {"arch": "cnn"}, "state_dict": {"w": torch.ones(2)}})
    first = (tmp_path / "m.pt").read_bytes()
    dataset.save({"config": {"arch": "cnn"}, "state_dict": {"w": torch.ones(2)}})
    assert (tmp_path / "m.pt").read_bytes() == first  # the same bytes: DVC sees no change
    assert torch.equal(dataset.load()["state_dict"]["w"], torch.ones(2))
    (tmp_path / "m.pt").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="m.pt: not a readable torch checkpoint"):
        dataset.load()
