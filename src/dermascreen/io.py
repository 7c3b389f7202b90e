"""File writing shared by library code and Kedro datasets (no Kedro imports here).

Everything is written to a temporary file beside the target, flushed to the disk, then renamed:
readers never see half a file, and a killed run (or a lost machine) leaves the previous version
in place. The temporary names are recognisable, so the leftovers of a killed write can be removed
(``remove_temporaries``) by the next run that owns the folder.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

_UMASK = os.umask(0)
os.umask(_UMASK)
# ".<target name>.<8 random characters>.tmp<suffix>" (mkstemp's random part has 8 characters)
_TEMPORARY_MARK = ".tmp"
_TEMPORARY_GLOB = f".*.????????{_TEMPORARY_MARK}*"


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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f"{_TEMPORARY_MARK}{suffix}")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
    try:
        yield Path(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    finally:
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


def remove_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that killed ``atomic_write`` calls left in ``directory``; return them.

    Only for a folder that one process writes at a time (a run's checkpoint folder): there, a
    temporary file at start-up can only be a leftover.
    """
    stale = sorted(Path(directory).glob(_TEMPORARY_GLOB))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _fsync(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)  # a folder opens read-only too (Linux, macOS)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
