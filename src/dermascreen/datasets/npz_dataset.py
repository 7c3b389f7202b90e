"""A dict of NumPy arrays stored as one ``.npz`` file."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from kedro.io import AbstractDataset, DatasetError
from kedro_datasets._typing import TablePreview

from dermascreen.io import atomic_write


class NpzDataset(AbstractDataset[dict[str, np.ndarray], dict[str, np.ndarray]]):
    """``{name: array}`` <-> ``filepath`` (``np.savez``; ``compress: true`` for ``savez_compressed``)."""

    def __init__(self, filepath: str, compress: bool = False, metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        self._compress = compress
        self.metadata = metadata

    def load(self) -> dict[str, np.ndarray]:
        try:
            with np.load(self._filepath, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        except FileNotFoundError:
            raise
        except (zipfile.BadZipFile, EOFError, ValueError, OSError) as error:
            raise DatasetError(f"{self._filepath}: not a readable .npz file ({error})") from error

    def save(self, data: dict[str, np.ndarray]) -> None:
        writer = np.savez_compressed if self._compress else np.savez
        with atomic_write(self._filepath, suffix=".npz") as tmp:
            writer(tmp, **data)

    def preview(self) -> TablePreview:
        """Each array's name, shape and dtype (read from the headers, not the data)."""
        return npz_table(self._filepath)

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "compress": self._compress}


def npz_table(path: Path) -> TablePreview:
    """kedro-viz's table of the arrays in an ``.npz``: name, shape, dtype, from each ``.npy`` header."""
    npy, rows = np.lib.format, []
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            with archive.open(member) as stream:
                major, _ = npy.read_magic(stream)
                shape, _, dtype = (npy.read_array_header_1_0 if major == 1 else npy.read_array_header_2_0)(stream)
            rows.append([member.removesuffix(".npy"), str(shape), str(dtype)])
    return TablePreview({"columns": ["array", "shape", "dtype"], "index": list(range(len(rows))), "data": rows})
