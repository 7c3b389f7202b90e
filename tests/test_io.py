"""dermascreen.io: atomic, durable writes and the removal of what a killed write leaves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dermascreen.io import atomic_write, remove_temporaries, save_torch


def test_a_failed_write_keeps_the_previous_version_and_leaves_nothing(tmp_path):
    target = tmp_path / "result.json"
    with atomic_write(target, suffix=".json") as tmp:
        tmp.write_text("first")
    with pytest.raises(RuntimeError), atomic_write(target, suffix=".json") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")

    assert target.read_text() == "first" and [path.name for path in tmp_path.iterdir()] == ["result.json"]


def test_the_file_is_synced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    """The real fsync and rename, watched: which path each call touched, in order."""
    calls = []
    fsync, replace = os.fsync, os.replace

    def watched_fsync(fd: int) -> None:
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def watched_replace(source, target) -> None:
        calls.append(("rename", str(source)))
        replace(source, target)

    monkeypatch.setattr(os, "fsync", watched_fsync)
    monkeypatch.setattr(os, "replace", watched_replace)
    with atomic_write(tmp_path / "state.pt", suffix=".pt") as tmp:
        tmp.write_bytes(b"state")

    assert calls == [("fsync", str(tmp)), ("rename", str(tmp)), ("fsync", str(tmp_path))]
    assert (tmp_path / "state.pt").read_bytes() == b"state"


def _killed_mid_write(target: Path, suffix: str = "") -> Path:
    """The temporary file that a process SIGKILLed inside ``atomic_write`` leaves beside ``target``."""
    script = ("import os, signal, sys\nfrom dermascreen.io import atomic_write\n"
              "with atomic_write(sys.argv[1], suffix=sys.argv[2]) as tmp:\n"
              "    tmp.write_text('half')\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    killed = subprocess.Popen([sys.executable, "-c", script, str(target), suffix])
    assert killed.wait(timeout=60) == -signal.SIGKILL
    (leftover,) = target.parent.glob(f".{target.name}.{killed.pid}.*.tmp{suffix}")  # its name holds the pid
    return leftover


def test_a_killed_writes_leftover_goes_at_the_next_write_of_its_file_only(tmp_path):
    state, table = tmp_path / "state.pt", tmp_path / "table.csv"
    state_leftover, table_leftover = _killed_mid_write(state, ".pt"), _killed_mid_write(table)
    assert state_leftover.read_text() == "half" and not state.exists()

    with atomic_write(state, suffix=".pt") as tmp:
        tmp.write_text("whole")
    assert state.read_text() == "whole"
    assert not state_leftover.exists() and table_leftover.exists()  # another file's: its own next write


def test_remove_temporaries_removes_the_dead_writers_files_only(tmp_path):
    leftovers = [_killed_mid_write(tmp_path / "state.pt", ".pt"), _killed_mid_write(tmp_path / "table.csv")]
    for name in (".hidden", ".state.pt.notatemp"):
        (tmp_path / name).write_text(name)
    with atomic_write(tmp_path / "live.json") as writing:  # a write under way in a live process
        writing.write_text("{}")
        assert remove_temporaries(tmp_path) == sorted(leftovers)
        assert sorted(path.name for path in tmp_path.iterdir()) == [".hidden", writing.name, ".state.pt.notatemp"]
    assert remove_temporaries(tmp_path / "absent") == []


def test_save_torch_writes_the_same_bytes_for_the_same_object(tmp_path):
    """Each save goes through a temporary file of another random name; the bytes must not depend on
    it, or DVC sees a changed output (and reruns what depends on it) where nothing changed."""
    target = tmp_path / "model.pt"
    data = {"config": {"arch": "cnn"}, "state_dict": {"weight": torch.arange(6.0).reshape(2, 3)}}
    save_torch(data, target)
    first = target.read_bytes()
    save_torch(data, target)

    assert target.read_bytes() == first and [path.name for path in tmp_path.iterdir()] == ["model.pt"]
    assert torch.equal(torch.load(target, weights_only=True)["state_dict"]["weight"], data["state_dict"]["weight"])


def test_leftovers_that_no_live_write_owns_go_whatever_their_pid(tmp_path):
    """A leftover named with this process's id but not written by it (a killed process whose id came
    round again, as in a fresh container), one of a pid no process can have, and one named before
    temporary names carried a pid."""
    reused, impossible, old = (tmp_path / f".state.pt.{os.getpid()}.abcdefgh.tmp.pt",
                               tmp_path / f".state.pt.{2**40}.abcdefgh.tmp.pt", tmp_path / ".state.pt.abcdefgh.tmp.pt")
    for leftover in (reused, impossible, old):
        leftover.write_text("half")
    with atomic_write(tmp_path / "state.pt", suffix=".pt") as tmp:
        tmp.write_text("whole")
        assert remove_temporaries(tmp_path) == []  # the write under way in this process is kept
    assert sorted(path.name for path in tmp_path.iterdir()) == ["state.pt"]
