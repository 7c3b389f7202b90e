"""dermascreen-predict on a temp folder of PNG/JPEG files, one of them corrupt."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dermascreen.inference.cli import main
from dermascreen.evaluation.calibration import apply_calibrator
from dermascreen.inference.model import CheckpointError, ensemble_checkpoint, ensemble_members, model_from_checkpoint
from dermascreen.inference.preprocess import iter_image_files, load_image
from dermascreen.models import build_model
from dermascreen.training.fit import predict_proba

TINY = {"arch": "cnn", "filters": 8, "depth": 2, "dropout": 0.1, "dense": 16, "num_classes": 2, "weights": "none"}
NORMALIZATION = {"mean": [0.76, 0.54, 0.56], "std": [0.14, 0.15, 0.17]}
CALIBRATOR = {"method": "temperature", "temperature": 0.05}  # sharpens: decisions move away from 0.5


def tiny_checkpoint(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = build_model(TINY)
    return {"config": dict(TINY), "state_dict": model.state_dict(), "normalization": NORMALIZATION,
            "training": {"seed": seed}, "class_weights": [1.0, 1.0], "run": f"tiny_{seed}",
            "hardware": {"device": "cpu"}}


@pytest.fixture
def project(tmp_path):
    """An exported model (checkpoint, calibrator, operating threshold, as phase3 writes it) and a
    folder: 2 PNG, 1 JPEG in a subfolder, 1 corrupt, 1 text."""
    exported = {**tiny_checkpoint(), "calibration": CALIBRATOR,
                "operating_point": {"threshold": 0.5, "policy": "default", "target_recall": 0.9, "reason": "test"}}
    torch.save(exported, tmp_path / "model.pt")
    images = tmp_path / "images"
    (images / "more").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (450, 600, 3), dtype=np.uint8)).save(images / "a.png")
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(images / "b_grey.png")
    Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(images / "more" / "c.jpg", quality=90)
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (images / "notes.txt").write_text("not an image")
    return tmp_path


def _run(project, *extra):
    return main([str(project / "images"), "-o", str(project / "out.csv"), "--model", str(project / "model.pt"),
                 *extra])


def test_folder_is_scored_and_the_corrupt_file_skipped(project, capsys):
    assert _run(project) == 0
    table = pd.read_csv(project / "out.csv")
    assert [name.rsplit("images/", 1)[1] for name in table["file"]] == ["a.png", "b_grey.png", "broken.jpg", "more/c.jpg"]
    ok = table[table["status"] == "ok"]
    assert len(ok) == 3 and ok["p_malignant"].between(0, 1).all()
    assert (ok["decision"] == np.where(ok["p_malignant"] >= 0.5, "malignant", "benign")).all()
    broken = table[table["file"].str.endswith("broken.jpg")].iloc[0]
    assert broken["status"].startswith("skipped: ") and np.isnan(broken["p_malignant"])
    out = capsys.readouterr()
    assert "3 image(s) scored, 1 skipped, calibration temperature, threshold 0.5000" in out.err
    for row in ok.itertuples():  # the calibrated probability and the decision, one line per image
        assert f"{row.file}\tp(malignant) {row.p_malignant:.4f}\t{row.decision}" in out.out.splitlines()


def test_probabilities_are_the_models_calibrated_by_the_exported_calibrator(project):
    assert _run(project) == 0
    table = pd.read_csv(project / "out.csv")
    checkpoint = torch.load(project / "model.pt", weights_only=True)
    image = load_image(project / "images" / "a.png")[None]  # (1, 28, 28, 3)
    raw = predict_proba(model_from_checkpoint(checkpoint, "model"), image, NORMALIZATION, 8, "cpu")[0, 1]
    assert table.loc[0, "p_malignant_uncalibrated"] == pytest.approx(raw, abs=1e-6)
    assert table.loc[0, "p_malignant"] == pytest.approx(apply_calibrator(CALIBRATOR, np.array([raw]))[0], abs=1e-6)
    assert table.loc[0, "p_malignant"] != pytest.approx(raw, abs=1e-3)


def test_explicit_threshold_overrides_the_calibrated_one(project):
    assert _run(project, "--threshold", "0.0") == 0
    table = pd.read_csv(project / "out.csv")
    assert (table.loc[table["status"] == "ok", "decision"] == "malignant").all()


def test_a_checkpoint_without_operating_threshold_needs_an_explicit_one(project, capsys):
    torch.save(tiny_checkpoint(seed=1), project / "model.pt")  # a phase2 checkpoint, not phase3's export
    assert _run(project) == 2
    assert "holds no operating threshold" in capsys.readouterr().err
    assert not (project / "out.csv").exists()
    assert _run(project, "--threshold", "0.3") == 0  # uncalibrated probabilities then
    table = pd.read_csv(project / "out.csv")
    assert (table["p_malignant"].dropna() == table["p_malignant_uncalibrated"].dropna()).all()


def test_missing_model_is_a_clear_error(project, capsys):
    (project / "model.pt").unlink()
    assert _run(project) == 2
    assert "model.pt not found" in capsys.readouterr().err


def test_no_readable_image_exits_1(tmp_path, project):
    assert main([str(project / "images" / "broken.jpg"), "-o", str(tmp_path / "o.csv"), "--model",
                 str(project / "model.pt")]) == 1
    assert pd.read_csv(tmp_path / "o.csv")["status"].str.startswith("skipped").all()


def test_whole_image_is_resized_bicubically_without_crop(tmp_path):
    # Left half red, right half blue, 4:3 like HAM10000: a crop would lose columns, a squeeze keeps both.
    pixels = np.zeros((450, 600, 3), dtype=np.uint8)
    pixels[:, :300, 0] = 255
    pixels[:, 300:, 2] = 255
    Image.fromarray(pixels).save(tmp_path / "half.png")
    out = load_image(tmp_path / "half.png")
    assert out.shape == (28, 28, 3) and out.dtype == np.uint8
    assert out[:, :13, 0].min() > 240 and out[:, 15:, 2].min() > 240
    reference = np.asarray(Image.fromarray(pixels).resize((28, 28), Image.Resampling.BICUBIC))
    assert np.array_equal(out, reference)


def test_folders_are_walked_in_sorted_order_and_files_taken_as_given(project):
    found = [p.name for p in iter_image_files([project / "images", project / "images" / "notes.txt"])]
    assert found == ["a.png", "b_grey.png", "broken.jpg", "c.jpg", "notes.txt"]


def test_checkpoint_that_does_not_match_its_config_is_a_clear_error():
    checkpoint = tiny_checkpoint()
    checkpoint["config"] = {**TINY, "filters": 16}
    with pytest.raises(CheckpointError, match="best.pt: the weights do not match the model config"):
        model_from_checkpoint(checkpoint, "best.pt")
    with pytest.raises(CheckpointError, match="best.pt: checkpoint lacks \\['state_dict'\\]"):
        model_from_checkpoint({"config": TINY, "normalization": NORMALIZATION}, "best.pt")


def test_a_seed_ensemble_export_gives_the_mean_probability_of_its_members(project):
    members = [tiny_checkpoint(seed) for seed in (3, 4, 5)]
    exported = {**ensemble_checkpoint(members, "tiny"), "calibration": CALIBRATOR,
                "operating_point": {"threshold": 0.5, "policy": "default", "target_recall": 0.9, "reason": "test"}}
    torch.save(exported, project / "model.pt")
    assert _run(project) == 0
    table = pd.read_csv(project / "out.csv")
    image = load_image(project / "images" / "a.png")[None]
    alone = [predict_proba(model_from_checkpoint(m, m["run"]), image, NORMALIZATION, 8, "cpu")[0, 1] for m in members]
    assert len(set(np.round(alone, 6))) == 3  # three different models
    assert table.loc[0, "p_malignant_uncalibrated"] == pytest.approx(np.mean(alone), abs=1e-6)  # other batch: float32 noise
    assert table.loc[0, "p_malignant"] == pytest.approx(apply_calibrator(CALIBRATOR, np.array([np.mean(alone)]))[0], abs=1e-5)
    unpacked = ensemble_members(exported, "model.pt")
    assert list(unpacked) == ["tiny_3", "tiny_4", "tiny_5"]
    for member, original in zip(unpacked.values(), members):
        assert member["training"] == original["training"]
        assert all(torch.equal(member["state_dict"][k], original["state_dict"][k]) for k in original["state_dict"])


def test_an_ensemble_whose_weights_do_not_match_its_members_is_a_clear_error():
    exported = ensemble_checkpoint([tiny_checkpoint(0), tiny_checkpoint(1)], "tiny")
    exported["members"].append({"run": "tiny_2", "seed": 2, "hardware": {}})  # a third member without weights
    with pytest.raises(CheckpointError, match="(?s)final.pt: the weights do not match .*Missing key.*members.2"):
        model_from_checkpoint(exported, "final.pt")
    with pytest.raises(CheckpointError, match="differ in config"):
        ensemble_checkpoint([tiny_checkpoint(0), {**tiny_checkpoint(1), "config": {**TINY, "dense": 8}}], "tiny")
