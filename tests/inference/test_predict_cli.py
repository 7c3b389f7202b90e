"""dermascreen-predict on real image files in a temp folder, with a tiny model exported as phase3 exports it."""

import json
import struct
import subprocess
import sys
import zlib

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dermascreen.datasets import TorchDataset
from dermascreen.evaluation.calibration import apply_calibrator
from dermascreen.inference.cli import DEFAULT_MODEL, main, project_root
from dermascreen.inference.model import CheckpointError, ensemble_checkpoint, ensemble_members, model_from_checkpoint
from dermascreen.inference.preprocess import background_colour, iter_image_files, load_image
from dermascreen.models import build_model
from dermascreen.pipelines.phase3.nodes import export_final_model
from dermascreen.training.fit import predict_proba
from project_helpers import PROJECT_ROOT, command_env

TINY = {"arch": "cnn", "filters": 8, "depth": 2, "dropout": 0.1, "dense": 16, "num_classes": 2,
        "image_size": 28, "weights": "none"}
NORMALIZATION = {"mean": [0.76, 0.54, 0.56], "std": [0.14, 0.15, 0.17]}
BACKGROUND = (194, 138, 143)  # NORMALIZATION's mean colour in 8 bits
CALIBRATOR = {"method": "temperature", "temperature": 0.05}  # sharpens: decisions move away from 0.5
THRESHOLD = {"threshold": 0.5, "policy": "default", "target_recall": 0.9, "reason": "test"}


def tiny_checkpoint(seed: int = 0) -> dict:
    """A phase2 checkpoint of an untrained (randomly initialised) model: enough for formats and errors."""
    torch.manual_seed(seed)
    model = build_model(TINY)
    return {"config": dict(TINY), "state_dict": model.state_dict(), "normalization": NORMALIZATION,
            "training": {"seed": seed}, "class_weights": [1.0, 1.0], "run": f"tiny_{seed}",
            "hardware": {"device": "cpu"}}


def save_model(path, checkpoint: dict) -> None:
    TorchDataset(str(path)).save(checkpoint)  # the catalog's dataset for final.pt


@pytest.fixture
def project(tmp_path):
    """final.pt as phase3 exports it (checkpoint + calibrator + operating threshold) and a
    folder: 2 PNG, 1 JPEG in a subfolder, 1 corrupt, 1 text."""
    save_model(tmp_path / "model.pt", export_final_model(tiny_checkpoint(), THRESHOLD, CALIBRATOR))
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
    return main([str(project / "images"), "--model", str(project / "model.pt"), *extra])


def test_background_is_the_training_mean_colour():
    assert background_colour(NORMALIZATION) == BACKGROUND


# ---- folders, outputs, progress ------------------------------------------------------------------

def test_folder_to_csv_scores_images_and_skips_the_corrupt_file(project, capsys):
    assert _run(project, "-o", str(project / "out.csv")) == 0
    table = pd.read_csv(project / "out.csv")
    assert [name.rsplit("images/", 1)[1] for name in table["file"]] == ["a.png", "b_grey.png", "broken.jpg", "more/c.jpg"]
    ok = table[table["status"] == "ok"]
    assert len(ok) == 3 and ok["p_malignant"].between(0, 1).all() and (ok["threshold"] == 0.5).all()
    assert (ok["decision"] == np.where(ok["p_malignant"] >= 0.5, "malignant", "benign")).all()
    broken = table[table["file"].str.endswith("broken.jpg")].iloc[0]
    assert broken["status"].startswith("skipped: unreadable image (") and np.isnan(broken["p_malignant"])
    out = capsys.readouterr()
    assert out.out == ""  # rows go to the file
    assert f"3 image(s) scored, 1 skipped, calibration temperature, threshold 0.5000: {project / 'out.csv'}" in out.err
    assert f"  skipped {project / 'images' / 'broken.jpg'}: unreadable image (" in out.err
    assert "%|" not in out.err  # auto progress: no bar when stderr is not a terminal


def test_json_output_has_the_same_rows_with_null_for_skipped_files(project):
    assert _run(project, "-o", str(project / "out.csv")) == 0
    assert _run(project, "-o", str(project / "out.json")) == 0
    assert _run(project, "-o", str(project / "rows.out"), "--format", "json") == 0  # --format over the suffix
    csv = pd.read_csv(project / "out.csv")
    for name in ("out.json", "rows.out"):
        records = json.loads((project / name).read_text())
        assert [list(r) for r in records] == [list(csv.columns)] * 4
        table = pd.DataFrame(records)
        for column in ("file", "threshold", "status"):
            assert table[column].tolist() == csv[column].tolist()
        for column in ("p_malignant", "p_malignant_uncalibrated"):
            assert np.allclose(table[column].astype(float), csv[column], rtol=0, atol=1e-12, equal_nan=True)
        [skipped] = [r for r in records if r["status"] != "ok"]
        assert skipped["p_malignant"] is None and skipped["decision"] == ""


def test_without_output_a_table_goes_to_stdout(project, capsys):
    assert main([str(project / "images" / "a.png"), "--model", str(project / "model.pt")]) == 0
    out = capsys.readouterr()
    [line] = out.out.splitlines()
    file, probability, decision = line.split("\t")
    assert file == str(project / "images" / "a.png") and decision in ("benign", "malignant")
    assert probability.startswith("p(malignant) 0.") and len(probability) == len("p(malignant) 0.1234")
    assert "1 image(s) scored, 0 skipped, calibration temperature, threshold 0.5000\n" in out.err
    assert not list(project.glob("*.csv"))


def test_progress_bar_on_request(project, capsys):
    assert _run(project, "-o", str(project / "out.csv"), "--progress", "true") == 0
    err = capsys.readouterr().err
    assert "100%|" in err and "4/4 " in err  # one step per file found, the corrupt one included


def test_probabilities_are_the_models_calibrated_by_the_exported_calibrator(project):
    assert _run(project, "-o", str(project / "out.csv")) == 0
    table = pd.read_csv(project / "out.csv")
    checkpoint = torch.load(project / "model.pt", weights_only=True)
    image = load_image(project / "images" / "a.png", 28, BACKGROUND)[None]  # (1, 28, 28, 3)
    raw = predict_proba(model_from_checkpoint(checkpoint, "model"), image, NORMALIZATION, 8, "cpu")[0, 1]
    assert table.loc[0, "p_malignant_uncalibrated"] == pytest.approx(raw, abs=1e-6)
    assert table.loc[0, "p_malignant"] == pytest.approx(apply_calibrator(CALIBRATOR, np.array([raw]))[0], abs=1e-6)
    assert table.loc[0, "p_malignant"] != pytest.approx(raw, abs=1e-3)


def test_explicit_threshold_overrides_the_calibrated_one(project):
    assert _run(project, "-o", str(project / "out.csv"), "--threshold", "0.0") == 0
    table = pd.read_csv(project / "out.csv")
    assert (table.loc[table["status"] == "ok", "decision"] == "malignant").all()


def test_a_checkpoint_without_operating_threshold_needs_an_explicit_one(project, capsys):
    save_model(project / "model.pt", tiny_checkpoint(seed=1))  # a phase2 checkpoint, not phase3's export
    assert _run(project, "-o", str(project / "out.csv")) == 2
    assert "holds no operating threshold" in capsys.readouterr().err
    assert not (project / "out.csv").exists()
    assert _run(project, "-o", str(project / "out.csv"), "--threshold", "0.3") == 0  # uncalibrated probabilities then
    table = pd.read_csv(project / "out.csv")
    assert (table["p_malignant"].dropna() == table["p_malignant_uncalibrated"].dropna()).all()


# ---- image formats -------------------------------------------------------------------------------

def _gradient(height: int = 60, width: int = 80) -> np.ndarray:
    """8-bit values over the whole range, varying along both axes."""
    return ((np.add.outer(np.arange(height) * 3, np.arange(width) * 2)) % 256).astype(np.uint8)


def _saved(image: Image.Image, path, mode: str, **options):
    image.save(path, **options)
    with Image.open(path) as reopened:
        assert reopened.mode == mode  # the file really is in the format under test
    return path


def _reference(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize((28, 28), Image.Resampling.BICUBIC))


def test_rgb_and_grey_pngs(tmp_path):
    grey = _gradient()
    rgb = np.stack([grey, 255 - grey, grey // 2], axis=-1)
    assert np.array_equal(load_image(_saved(Image.fromarray(rgb), tmp_path / "rgb.png", "RGB"), 28, BACKGROUND),
                          _reference(rgb))
    assert np.array_equal(load_image(_saved(Image.fromarray(grey), tmp_path / "l.png", "L"), 28, BACKGROUND),
                          _reference(np.stack([grey] * 3, axis=-1)))


def test_16_bit_grey_png_is_scaled_to_8_bits_not_clipped_to_white(tmp_path):
    grey = _gradient()
    sixteen = _saved(Image.fromarray(grey.astype(np.uint16) * 257), tmp_path / "g16.png", "I;16")
    eight = _saved(Image.fromarray(grey), tmp_path / "g8.png", "L")
    out = load_image(sixteen, 28, BACKGROUND)
    assert np.array_equal(out, load_image(eight, 28, BACKGROUND))  # 257 * w scales back to exactly w
    assert out.mean() < 200 and out.min() < 30  # PIL's own convert("RGB") gives 255 nearly everywhere


def _png_16_bit_rgb(path, pixels: np.ndarray):
    """A 48-bit RGB PNG written by hand (PIL cannot write one): signature, IHDR, IDAT, IEND."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    height, width, _ = pixels.shape
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)  # filter 0 per row
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)  # 16 bits, colour type 2 (RGB)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))
    return path


def test_16_bit_rgb_png_is_read_by_its_high_byte(tmp_path):
    grey = _gradient()
    rgb = np.stack([grey, 255 - grey, grey // 2], axis=-1)
    low_bytes = np.random.default_rng(0).integers(0, 256, rgb.shape)
    path = _png_16_bit_rgb(tmp_path / "rgb48.png", rgb.astype(np.uint32) * 256 + low_bytes)
    with Image.open(path) as image:
        assert image.mode == "RGB"  # PIL reduces 48-bit RGB itself
    assert np.array_equal(load_image(path, 28, BACKGROUND), _reference(rgb))  # not near white either


def test_palette_png_gives_the_colours_of_its_palette(tmp_path):
    grey = _gradient()
    rgb = np.stack([grey, 255 - grey, np.full_like(grey, 60)], axis=-1)
    palette = Image.fromarray(rgb).quantize(colors=64)
    path = _saved(palette, tmp_path / "p.png", "P")
    assert np.array_equal(load_image(path, 28, BACKGROUND), _reference(np.asarray(palette.convert("RGB"))))


def test_palette_png_with_a_transparent_colour_shows_the_background(tmp_path):
    indices = np.zeros((40, 40), dtype=np.uint8)
    indices[:, 20:] = 1
    palette = Image.fromarray(indices, mode="P")
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    path = _saved(palette, tmp_path / "pt.png", "P", transparency=1)  # green is transparent
    out = load_image(path, 28, BACKGROUND)
    assert (out[:, :12] == (255, 0, 0)).all() and (out[:, 16:] == BACKGROUND).all()


def test_grey_with_alpha_is_composited_over_the_background(tmp_path):
    grey = _gradient()
    alpha = np.full_like(grey, 255)
    alpha[:, 40:] = 0  # right half transparent
    path = _saved(Image.fromarray(np.stack([grey, alpha], axis=-1), mode="LA"), tmp_path / "la.png", "LA")
    out = load_image(path, 28, BACKGROUND)
    opaque = _reference(np.stack([grey] * 3, axis=-1))  # left of the edge: the grey values themselves
    assert np.abs(out[:, :11].astype(int) - opaque[:, :11].astype(int)).max() <= 1
    assert (out[:, 16:] == BACKGROUND).all()


def test_rgba_is_composited_over_the_background_not_its_hidden_colour(tmp_path):
    pixels = np.zeros((60, 80, 4), dtype=np.uint8)
    pixels[:, :40] = (255, 0, 0, 255)   # opaque red
    pixels[:, 40:] = (0, 255, 0, 0)     # transparent, green underneath
    pixels[:10, :40, 3] = 128           # half-transparent red: halfway to the background
    path = _saved(Image.fromarray(pixels, mode="RGBA"), tmp_path / "rgba.png", "RGBA")
    out = load_image(path, 28, BACKGROUND)
    assert (out[8:, :12] == (255, 0, 0)).all() and (out[:, 16:] == BACKGROUND).all()
    halfway = (np.array((255, 0, 0)) + np.array(BACKGROUND)) / 2
    assert np.abs(out[0, 5] - halfway).max() <= 2


def test_jpegs_colour_and_grey(tmp_path):
    colour = np.zeros((60, 80, 3), dtype=np.uint8) + np.array([200, 120, 90], dtype=np.uint8)
    out = load_image(_saved(Image.fromarray(colour), tmp_path / "c.jpg", "RGB", quality=95), 28, BACKGROUND)
    assert np.abs(out.astype(int) - (200, 120, 90)).max() <= 4  # JPEG is lossy
    grey = np.full((60, 80), 77, dtype=np.uint8)
    out = load_image(_saved(Image.fromarray(grey), tmp_path / "g.jpg", "L", quality=95), 28, BACKGROUND)
    assert np.abs(out.astype(int) - 77).max() <= 2


def test_32_bit_images_are_refused_with_the_reason(tmp_path):
    path = _saved(Image.fromarray(np.zeros((8, 8), dtype=np.int32)), tmp_path / "i32.tif", "I")
    with pytest.raises(ValueError, match="32-bit integer pixels are not supported: save the image with 8 or 16 bits"):
        load_image(path, 28, BACKGROUND)


def test_every_format_is_scored_through_the_cli(project, capsys):
    folder = project / "formats"
    folder.mkdir()
    grey = _gradient()
    rgb = np.stack([grey, 255 - grey, grey // 2], axis=-1)
    Image.fromarray(rgb).save(folder / "rgb.png")
    Image.fromarray(grey).save(folder / "l.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(folder / "i16.png")
    Image.fromarray(rgb).quantize(colors=32).save(folder / "p.png")
    Image.fromarray(np.stack([grey, grey], axis=-1), mode="LA").save(folder / "la.png")
    Image.fromarray(np.dstack([rgb, grey]), mode="RGBA").save(folder / "rgba.png")
    Image.fromarray(rgb).save(folder / "rgb.jpg")
    Image.fromarray(grey).save(folder / "l.tif")
    assert main([str(folder), "--model", str(project / "model.pt"), "-o", str(project / "f.csv")]) == 0
    table = pd.read_csv(project / "f.csv").set_index("file")
    assert (table["status"] == "ok").all() and len(table) == 8
    # the 16-bit file scores as its 8-bit twin
    assert table.loc[str(folder / "i16.png"), "p_malignant"] == pytest.approx(table.loc[str(folder / "l.png"), "p_malignant"])


# ---- errors: one line on stderr, naming the problem and the fix ------------------------------------

def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [line] = err.splitlines()
    return line


@pytest.mark.parametrize(("extra", "message"), [
    (["--batch-size", "0"], "argument --batch-size: expected a positive integer, got '0'"),
    (["--batch-size", "-4"], "argument --batch-size: expected a positive integer, got '-4'"),
    (["--size", "64"], "--size 64: this model takes 28x28 images (the image_size it was trained on); use --size 28"),
    (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    (["-o", "out.xlsx"], "--output out.xlsx: cannot tell the format from its suffix; name it .csv or .json, or pass --format"),
    (["--format", "json"], "--format applies to --output FILE"),
    (["--threshold", "1.5"], "--threshold must be in [0, 1], got 1.5"),
])
def test_bad_arguments_are_one_line_errors(project, capsys, extra, message):
    assert _run(project, *extra) == 2
    assert _error_line(capsys).startswith(f"dermascreen-predict: {message}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_a_one_line_error(project, capsys):
    assert _run(project, "--device", "cuda") == 2
    assert _error_line(capsys) == ("dermascreen-predict: --device cuda: torch sees no CUDA GPU on this machine; "
                                   "use --device cpu (or auto)")


class Foreign:
    """A class torch's safe loader will not unpickle."""


@pytest.mark.parametrize(("write", "message"), [
    (lambda path: path.write_text("just some text\n"), "is not a model file torch can load safely ("),
    (lambda path: path.write_bytes(b""), "is not a model file torch can load safely (EOFError)"),
    (lambda path: torch.save({"net": Foreign()}, path), "is not a model file torch can load safely ("),
    (lambda path: torch.save(torch.randn(3, 3), path), "expected a checkpoint dict, got Tensor"),
    (lambda path: torch.save(build_model(TINY).state_dict(), path),  # a bare state dict, someone else's format
     "checkpoint lacks ['config', 'state_dict', 'normalization']; it has ['backbone."),
    (lambda path: torch.save({**tiny_checkpoint(), "config": {**TINY, "filters": 16}}, path),
     "the weights do not match the model config"),
    (lambda path: torch.save({**tiny_checkpoint(), "normalization": {"mean": [0.5]}}, path),
     "normalization: missing key 'std'"),
    (lambda path: torch.save({**tiny_checkpoint(), "config": {**TINY, "num_classes": 7},
                              "state_dict": build_model({**TINY, "num_classes": 7}).state_dict()}, path),
     "a 7-class model; inference needs the binary (benign, malignant) model"),
])
def test_a_foreign_model_file_is_a_one_line_error(project, capsys, write, message):
    path = project / "foreign.pt"
    write(path)
    assert main([str(project / "images"), "--model", str(path)]) == 2
    line = _error_line(capsys)
    assert line.startswith(f"dermascreen-predict: {path}") and message in line
    assert line.endswith("pass --model with the final.pt that phase3 exports (data/06_models/phase3/final.pt)")


def test_missing_model_is_a_one_line_error(project, capsys):
    (project / "model.pt").unlink()
    assert _run(project) == 2
    assert _error_line(capsys) == (f"dermascreen-predict: model file {project / 'model.pt'} not found: build it "
                                   "with 'dvc repro phase3' (docs/phase3.md) or pass --model FILE")


def test_an_unreadable_image_alone_exits_1_naming_the_file(project, capsys):
    broken = project / "images" / "broken.jpg"
    assert main([str(broken), "--model", str(project / "model.pt")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"  skipped {broken}: unreadable image (" in err
    assert "dermascreen-predict: no image could be scored (reasons above): pass readable image files" in err


def test_a_folder_without_images_exits_1(project, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--model", str(project / "model.pt")]) == 1
    assert "dermascreen-predict: no image files in the inputs" in capsys.readouterr().err


# ---- default paths ------------------------------------------------------------------------------

def test_project_root_is_found_from_the_package_not_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert project_root() == PROJECT_ROOT
    fake = tmp_path / "checkout"
    (fake / "src" / "dermascreen" / "inference").mkdir(parents=True)
    (fake / "pyproject.toml").write_text('[project]\nname = "dermascreen"\n')
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "another"\n')
    assert project_root(fake / "src" / "dermascreen" / "inference" / "cli.py") == fake


def test_default_model_is_read_from_the_project_root_when_run_elsewhere(tmp_path):
    """The real entry point, run from a folder that holds a decoy data/06_models/phase3/final.pt:
    the project's model is used, and whatever happens is reported without a traceback."""
    decoy = tmp_path / DEFAULT_MODEL
    decoy.parent.mkdir(parents=True)
    decoy.write_text("a decoy in the working directory")
    done = subprocess.run([sys.executable, "-m", "dermascreen.inference.cli", "missing.png"], cwd=tmp_path,
                          capture_output=True, text=True, env=command_env(PYTHONPATH=str(PROJECT_ROOT / "src")))
    assert "Traceback" not in done.stderr and str(decoy) not in done.stderr and "decoy" not in done.stderr
    if (PROJECT_ROOT / DEFAULT_MODEL).is_file():  # phase3 has run in this checkout
        assert done.returncode == 1 and "skipped missing.png" in done.stderr
    else:
        assert done.returncode == 2 and f"model file {PROJECT_ROOT / DEFAULT_MODEL} not found" in done.stderr


# ---- resizing, file discovery, checkpoint checks -------------------------------------------------

def test_whole_image_is_resized_bicubically_without_crop(tmp_path):
    # Left half red, right half blue, 4:3 like HAM10000: a crop would lose columns, a squeeze keeps both.
    pixels = np.zeros((450, 600, 3), dtype=np.uint8)
    pixels[:, :300, 0] = 255
    pixels[:, 300:, 2] = 255
    Image.fromarray(pixels).save(tmp_path / "half.png")
    out = load_image(tmp_path / "half.png", 28, BACKGROUND)
    assert out.shape == (28, 28, 3) and out.dtype == np.uint8
    assert out[:, :13, 0].min() > 240 and out[:, 15:, 2].min() > 240
    assert np.array_equal(out, _reference(pixels))


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
    save_model(project / "model.pt", exported)
    assert _run(project, "-o", str(project / "out.csv")) == 0
    table = pd.read_csv(project / "out.csv")
    image = load_image(project / "images" / "a.png", 28, BACKGROUND)[None]
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
