"""A ``torch.save`` file: model checkpoints ``{"config": dict, "state_dict": dict, ...}``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from kedro.io import AbstractDataset, DatasetError

from dermascreen.io import atomic_write


class TorchDataset(AbstractDataset[Any, Any]):
    """Saves any object ``torch.save`` can write; loads it onto the CPU with ``weights_only``."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> Any:
        try:
            return torch.load(self._filepath, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as error:  # torch raises many types for a corrupt file
            raise DatasetError(f"{self._filepath}: not a readable torch checkpoint ({error})") from error

    def save(self, data: Any) -> None:
        with atomic_write(self._filepath, suffix=".pt") as tmp:
            torch.save(data, tmp)

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
