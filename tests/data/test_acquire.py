import logging
import subprocess
import sys
import time

import numpy as np
import pytest
from kedro.io import DatasetError

from project_helpers import synthetic_raw
from dermascreen.data import acquire as acquire_module
from dermascreen.data.acquire import acquire, drop_replaced_copy, md5sum
from dermascreen.data.errors import DataAcquisitionError
from dermascreen.datasets import DermaMNISTDataset


def write_npz(path, seed=0, float_images=False):
    """A DermaMNIST-shaped file (random pixels); ``float_images`` makes the train images float32."""
    arrays = synthetic_raw(seed=seed)
    if float_images:
        arrays["train_images"] = arrays["train_images"].astype(np.float32) / 255
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Real files on disk: two good DermaMNIST-shaped copies and a broken one (float images)."""
    folder = tmp_path_factory.mktemp("sources")
    return {"good": write_npz(folder / "good.npz"), "other": write_npz(folder / "other.npz", seed=1),
            "broken": write_npz(folder / "broken.npz", float_images=True)}


@pytest.fixture
def local_npz(files):
    return files["good"]


def leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_local_file_is_copied_and_reported_as_non_official(tmp_path, local_npz):
    dest = tmp_path / "raw" / "dermamnist_28.npz"
    provenance = acquire(dest, 28, str(local_npz))
    assert dest.read_bytes() == local_npz.read_bytes()
    assert provenance.official is False
    assert provenance.md5 == md5sum(local_npz)
    assert provenance.official_md5 == "0744692d530f8e62ec473284d019b0c7"
    assert "local file" in provenance.source
    assert not leftovers(dest.parent)  # no temp left


def test_existing_copy_is_used_when_no_local_file_is_named(tmp_path):
    dest = tmp_path / "dermamnist_28.npz"
    dest.write_bytes(b"already here")
    provenance = acquire(dest, 28, None)
    assert dest.read_bytes() == b"already here"
    assert provenance.source == "existing file"


def test_broken_file_is_refused_then_the_corrected_file_is_accepted(tmp_path, files):
    """The issue's first sequence, through the real dataset: nothing of the refused file stays."""
    dest = tmp_path / "01_raw" / "dermamnist_28.npz"
    broken = files["broken"]
    with pytest.raises(DatasetError) as refused:  # Kedro's wrapper of the dataset's error
        DermaMNISTDataset(str(dest), 28, str(broken)).load()
    assert isinstance(refused.value.__cause__, DataAcquisitionError)
    message = str(refused.value.__cause__)
    assert message.startswith(f"DERMAMNIST_NPZ file refused: {broken}: train_images has dtype float32")
    assert "was not created" in message and message.endswith("or unset it to download the official file.")
    assert "Fix: set DERMAMNIST_NPZ" in message
    assert not dest.exists() and not leftovers(dest.parent)

    loaded = DermaMNISTDataset(str(dest), 28, str(files["good"])).load()
    assert dest.read_bytes() == files["good"].read_bytes()
    assert loaded["arrays"]["train_images"].dtype == np.uint8
    assert loaded["provenance"]["source"] == f"local file {files['good'].name}"


def test_changed_local_file_replaces_the_copy_with_a_log_line(tmp_path, files, caplog):
    """The issue's second sequence: an explicit DERMAMNIST_NPZ differing from the copy wins."""
    dest = tmp_path / "dermamnist_28.npz"
    acquire(dest, 28, str(files["good"]))
    with caplog.at_level(logging.INFO, logger=acquire_module.__name__):
        provenance = acquire(dest, 28, str(files["other"]))
    assert dest.read_bytes() == files["other"].read_bytes()
    assert provenance.md5 == md5sum(files["other"]) != md5sum(files["good"])
    replaced = [r.getMessage() for r in caplog.records if "differs from" in r.getMessage()]
    assert replaced == [f"DERMAMNIST_NPZ={files['other']} (md5 {md5sum(files['other'])}) differs from "
                        f"{dest} (md5 {md5sum(files['good'])}): using it; the copy is replaced once "
                        "the new file passes validation"]


def test_same_local_file_leaves_the_copy_untouched(tmp_path, files, caplog):
    dest = tmp_path / "dermamnist_28.npz"
    acquire(dest, 28, str(files["good"]))
    inode = dest.stat().st_ino
    with caplog.at_level(logging.INFO, logger=acquire_module.__name__):
        provenance = acquire(dest, 28, str(files["good"]))
    assert dest.stat().st_ino == inode  # not copied again
    assert provenance.source == f"local file {files['good'].name}"
    assert not [r for r in caplog.records if "differs from" in r.getMessage()]


def test_refused_replacement_keeps_the_copy(tmp_path, files):
    dest = tmp_path / "dermamnist_28.npz"
    acquire(dest, 28, str(files["good"]))
    with pytest.raises(DataAcquisitionError, match=f"{files['broken']}: train_images .* was left as it was"):
        acquire(dest, 28, str(files["broken"]))
    assert dest.read_bytes() == files["good"].read_bytes()
    assert not leftovers(tmp_path)


def test_unreadable_file_is_named_not_its_temporary_copy(tmp_path):
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataAcquisitionError, match=f"refused: {truncated}: not a readable .npz"):
        acquire(tmp_path / "raw" / "dermamnist_28.npz", 28, str(truncated))


def test_drop_replaced_copy_only_when_the_named_file_differs(tmp_path, files):
    dest = tmp_path / "dermamnist_28.npz"
    assert drop_replaced_copy(dest, str(files["good"])) is False  # no copy yet
    acquire(dest, 28, str(files["good"]))
    assert drop_replaced_copy(dest, None) is False and dest.exists()
    assert drop_replaced_copy(dest, str(files["good"])) is False and dest.exists()
    assert drop_replaced_copy(dest, str(files["other"])) is True and not dest.exists()


def test_command_before_dvc_repro_reads_dermamnist_npz(tmp_path, files, monkeypatch, capsys):
    """What `make all` runs before `dvc repro`, which cannot see DERMAMNIST_NPZ."""
    dest = tmp_path / "dermamnist_28.npz"
    acquire(dest, 28, str(files["good"]))
    monkeypatch.delenv("DERMAMNIST_NPZ", raising=False)
    assert acquire_module.main([str(dest), "--drop-replaced"]) == 0 and dest.exists()
    monkeypatch.setenv("DERMAMNIST_NPZ", str(tmp_path / "nowhere.npz"))
    assert acquire_module.main([str(dest), "--drop-replaced"]) == 1 and dest.exists()
    assert "nowhere.npz, which is not a file" in capsys.readouterr().err
    monkeypatch.setenv("DERMAMNIST_NPZ", str(files["other"]))
    assert acquire_module.main([str(dest), "--drop-replaced"]) == 0 and not dest.exists()


def test_command_of_the_raw_data_stage_acquires_the_file(tmp_path, files, monkeypatch, capsys):
    """dvc.yaml's raw_data stage: the file named by DERMAMNIST_NPZ, validated, at RAW_FILE."""
    dest = tmp_path / "01_raw" / "dermamnist_28.npz"
    monkeypatch.setenv("DERMAMNIST_NPZ", str(files["good"]))
    assert acquire_module.main([str(dest), "--size", "28"]) == 0
    assert dest.read_bytes() == files["good"].read_bytes()
    monkeypatch.setenv("DERMAMNIST_NPZ", str(tmp_path / "nowhere.npz"))
    assert acquire_module.main([str(dest), "--size", "28"]) == 1
    assert capsys.readouterr().err.startswith("dermascreen: DERMAMNIST_NPZ points at ")
    with pytest.raises(SystemExit):  # argparse: one mode or the other
        acquire_module.main([str(dest)])


def test_official_file_is_recognised_by_md5(tmp_path, local_npz, monkeypatch):
    digest = md5sum(local_npz)
    monkeypatch.setattr(acquire_module, "official_source", lambda size: ("http://unused", digest))
    assert acquire(tmp_path / "d.npz", 28, str(local_npz)).official is True


def test_missing_local_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataAcquisitionError, match="DERMAMNIST_NPZ points at .*nowhere.npz.*Fix: "):
        acquire(tmp_path / "d.npz", 28, str(tmp_path / "nowhere.npz"))


def test_offline_download_fails_fast_with_instructions(tmp_path, monkeypatch):
    # A closed local port stands in for an unreachable Zenodo: refused at once.
    monkeypatch.setattr(acquire_module, "official_source",
                        lambda size: ("http://127.0.0.1:9/dermamnist.npz", "0" * 32))
    dest = tmp_path / "raw" / "dermamnist_28.npz"
    start = time.monotonic()
    with pytest.raises(DataAcquisitionError, match="set DERMAMNIST_NPZ=/path/to/dermamnist.npz"):
        acquire(dest, 28, None)
    assert time.monotonic() - start < 15
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


def test_sizes_come_from_medmnist_info():
    url, md5 = acquire_module.official_source(64)
    assert "dermamnist_64.npz" in url and md5 == "b70a2f5635c6199aeaa28c31d7202e1f"
    with pytest.raises(ValueError, match="image size must be one of"):
        acquire_module.official_source(32)


def test_the_raw_data_step_reads_medmnist_info_without_importing_medmnist():
    """The raw-data stage is a process of its own: it reads ``medmnist.INFO`` (the same dict as the
    package's) without ``import medmnist``, whose datasets and evaluator pull in torch and scikit-learn."""
    import medmnist

    from dermascreen.data.medmnist_info import dataset_info

    assert dataset_info() == medmnist.INFO["dermamnist"]
    probe = ("import sys; from dermascreen.data.acquire import official_source; official_source(28); "
             "print(sorted({'medmnist', 'torch', 'sklearn'} & set(sys.modules)))")
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert imported.strip() == "[]"
