"""The raw DermaMNIST ``.npz``: acquired on load (local copy or download), then read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset
from kedro_datasets._typing import TablePreview

from dermascreen.data.acquire import acquire
from dermascreen.data.validate import read_raw_npz
from dermascreen.datasets.npz_dataset import npz_table


class DermaMNISTDataset(AbstractDataset[None, dict[str, Any]]):
    """Read-only raw data: ``{"arrays": {key: array}, "provenance": dict}``.

    ``load`` first puts the file at ``filepath``: from ``local_file`` (``DERMAMNIST_NPZ``, which
    replaces a different copy, validated before it lands), else the copy already there, else the
    official download (see ``dermascreen.data.acquire``).
    """

    def __init__(self, filepath: str, size: int = 28, local_file: str | None = None,
                 metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        self._size = int(size)
        self._local_file = local_file or None
        self.metadata = metadata

    def load(self) -> dict[str, Any]:
        provenance = acquire(self._filepath, self._size, self._local_file)
        return {"arrays": read_raw_npz(self._filepath), "provenance": provenance.to_dict()}

    def save(self, data: Any) -> None:
        raise NotImplementedError(f"{self._filepath} is raw input; the project never writes it")

    def preview(self) -> TablePreview:
        """The arrays of the copy at ``filepath`` (name, shape, dtype); never acquires the data."""
        return npz_table(self._filepath)

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "size": self._size, "local_file": self._local_file}
