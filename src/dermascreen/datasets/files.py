"""Small file datasets (JSON, text, CSV, figures) that write atomically, with kedro-viz previews.

kedro-datasets' equivalents write in place through fsspec. DVC never records such a half-written
file (it removes a stage's outs before running it and saves them only when it succeeds), but a
plain ``kedro run`` killed mid-save would leave one for the next run, a reader or kedro-viz;
these write to a temporary file beside the target and rename it, so the previous version stays
until the new one is complete. They also write strict JSON (NaN as ``null``) and close figures.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError
from kedro_datasets._typing import HTMLPreview, ImagePreview, JSONPreview, TablePreview

from dermascreen.io import atomic_write


class _FileDataset(AbstractDataset):
    suffix = ""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        self.metadata = metadata

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


class JSONDataset(_FileDataset):
    """A JSON document (dicts, lists, numbers); NaN is written as ``null``."""

    def load(self) -> Any:
        try:
            return json.loads(self._filepath.read_text())
        except json.JSONDecodeError as error:
            raise DatasetError(f"{self._filepath}: not valid JSON ({error})") from error

    def save(self, data: Any) -> None:
        text = json.dumps(_finite(data), indent=2, sort_keys=False) + "\n"
        with atomic_write(self._filepath) as tmp:
            tmp.write_text(text)

    def preview(self) -> JSONPreview:
        """The document as written, for kedro-viz's JSON viewer."""
        return JSONPreview(self._filepath.read_text())


class TextDataset(_FileDataset):
    """A text file (markdown, HTML)."""

    def load(self) -> str:
        return self._filepath.read_text()

    def save(self, data: str) -> None:
        with atomic_write(self._filepath) as tmp:
            tmp.write_text(data)

    def preview(self) -> HTMLPreview:
        """An HTML file as it is; any other text (markdown) verbatim in a ``<pre>`` block."""
        text = self._filepath.read_text()
        if self._filepath.suffix in (".html", ".htm"):
            return HTMLPreview(text)
        return HTMLPreview(f"<pre>{html.escape(text)}</pre>")


class CSVDataset(_FileDataset):
    """A pandas DataFrame as CSV, without the index."""

    def load(self) -> pd.DataFrame:
        return pd.read_csv(self._filepath)

    def save(self, data: pd.DataFrame) -> None:
        with atomic_write(self._filepath) as tmp:
            data.to_csv(tmp, index=False)

    def preview(self, nrows: int = 5) -> TablePreview:
        """The first ``nrows`` rows, in the split layout kedro-viz's table expects."""
        return TablePreview(pd.read_csv(self._filepath, nrows=nrows).to_dict(orient="split"))


class FigureDataset(_FileDataset):
    """A matplotlib figure saved as PNG (closed after saving, so runs do not leak figures)."""

    def __init__(self, filepath: str, dpi: int = 120, metadata: dict[str, Any] | None = None):
        super().__init__(filepath, metadata)
        self._dpi = dpi

    def load(self) -> Any:
        raise DatasetError(f"{self._filepath}: figures are outputs only")

    def save(self, data: Any) -> None:
        import matplotlib.pyplot as plt

        with atomic_write(self._filepath, suffix=".png") as tmp:
            data.savefig(tmp, dpi=self._dpi, bbox_inches="tight", format="png")
        plt.close(data)

    def preview(self) -> ImagePreview:
        """The saved PNG, base64-encoded as kedro-viz's image viewer expects."""
        return ImagePreview(base64.b64encode(self._filepath.read_bytes()).decode("ascii"))


def _finite(value: Any) -> Any:
    """Replace NaN/inf by None recursively: strict JSON (and DVC) reject them."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy scalar
        return _finite(value.item())
    return value
