import time

import numpy as np
import pytest

from project_helpers import synthetic_raw
from dermascreen.data import acquire as acquire_module
from dermascreen.data.acquire import acquire, md5sum
from dermascreen.data.errors import DataAcquisitionError


@pytest.fixture
def local_npz(tmp_path):
    path = tmp_path / "copy.npz"
    np.savez(path, **synthetic_raw({"train": 7, "val": 7, "test": 7}))
    return path


def test_local_file_is_copied_and_reported_as_non_official(tmp_path, local_npz):
    dest = tmp_path / "raw" / "dermamnist_28.npz"
    provenance = acquire(dest, 28, str(local_npz))
    assert dest.read_bytes() == local_npz.read_bytes()
    assert provenance.official is False
    assert provenance.md5 == md5sum(local_npz)
    assert provenance.official_md5 == "0744692d530f8e62ec473284d019b0c7"
    assert "local file" in provenance.source
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_existing_file_wins_over_local_file(tmp_path, local_npz):
    dest = tmp_path / "dermamnist_28.npz"
    dest.write_bytes(b"already here")
    provenance = acquire(dest, 28, str(local_npz))
    assert dest.read_bytes() == b"already here"
    assert provenance.source == "existing file"


def test_official_file_is_recognised_by_md5(tmp_path, local_npz, monkeypatch):
    digest = md5sum(local_npz)
    monkeypatch.setattr(acquire_module, "official_source", lambda size: ("http://unused", digest))
    assert acquire(tmp_path / "d.npz", 28, str(local_npz)).official is True


def test_missing_local_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataAcquisitionError, match="DERMAMNIST_NPZ points at .*nowhere.npz"):
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
