"""File writing shared by library code and Kedro datasets (no Kedro imports here).

Everything is written to a temporary file beside the target, flushed to the disk, then renamed:
readers never see half a file, and a killed run (or a lost machine) leaves the previous version
in place. A temporary name carries its writer's process id, so the leftovers of a killed write
are recognisable and removed (``remove_temporaries``) by the next write of the same file, and by
a training run's checkpointer when it starts.
"""

from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

_UMASK = os.umask(0)
os.umask(_UMASK)
# ".<target name>.<writer's pid>.<8 random characters>.tmp<suffix>" (mkstemp's random part has 8
# characters); before the pid was added: ".<target name>.<8 random characters>.tmp<suffix>"
_TEMPORARY_MARK = ".tmp"
_TEMPORARY_NAME = re.compile(rf"\.(?P<target>.+)\.(?P<pid>\d+)\.[a-z0-9_]{{8}}{re.escape(_TEMPORARY_MARK)}")
_OLD_TEMPORARY_NAME = re.compile(rf"\.(?P<target>.+)\.[a-z0-9_]{{8}}{re.escape(_TEMPORARY_MARK)}")
_WRITING: set[str] = set()  # this process's temporary files being written (its threads share its pid)


@contextmanager
def atomic_write(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success make its content durable and
    rename it onto ``path``.

    The file is fsynced before the rename (else a crash can leave the new name on empty data) and
    the folder after it (else a crash can forget the rename). ``suffix`` ends the temporary name,
    for writers that infer the format from it (``.npz``, ``.png``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_temporaries(path.parent, target=path.name)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                               suffix=f"{_TEMPORARY_MARK}{suffix}")
    _WRITING.add(os.path.abspath(tmp))
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
    try:
        yield Path(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    finally:
        _WRITING.discard(os.path.abspath(tmp))
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_torch(data: Any, path: str | os.PathLike) -> None:
    """``torch.save`` of ``data`` to ``path`` through ``atomic_write``.

    Saved into an open file, not to the temporary path: given a path, ``torch.save`` names the
    archive inside the file after it, so the temporary file's random name made every save's bytes
    differ, and DVC saw a changed output where nothing had changed.
    """
    import torch  # here, not at the top: most users of this module write no checkpoints

    with atomic_write(path, suffix=".pt") as tmp, open(tmp, "wb") as file:
        torch.save(data, file)


def remove_temporaries(directory: str | os.PathLike, target: str | None = None) -> list[Path]:
    """Delete the temporary files of ``atomic_write`` calls in ``directory`` (of ``target`` only, if
    given) that no running write owns: a killed write's leftovers. Return them.

    A temporary file of a live process (a write under way in another process, or in this one) is
    kept; one named with this process's own id but not written by it (a killed process whose id
    came round again, as in a fresh container) is not. Process ids are this machine's: a folder
    written by processes of several machines at once is not a use this project has.
    """
    stale = []
    for path in sorted(Path(directory).glob(".*")) if Path(directory).is_dir() else []:
        match = _TEMPORARY_NAME.match(path.name) or _OLD_TEMPORARY_NAME.match(path.name)
        if match and (target is None or match["target"] == target) and not _owned(path, match):
            path.unlink(missing_ok=True)
            stale.append(path)
    return stale


def _owned(path: Path, match: re.Match) -> bool:
    """Whether a running write owns the temporary file ``path`` (named as ``match`` parsed it)."""
    if match.re is _OLD_TEMPORARY_NAME:
        return False  # written before names carried a pid: its writer has long ended
    pid = int(match["pid"])
    if pid == os.getpid():
        return os.path.abspath(path) in _WRITING
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except (ProcessLookupError, OverflowError):  # no such process; no process has so large an id
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _fsync(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)  # a folder opens read-only too (Linux, macOS)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
