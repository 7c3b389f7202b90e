"""A ``torch.save`` file: model checkpoints ``{"config": dict, "state_dict": dict, ...}``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from kedro.io import AbstractDataset, DatasetError
from kedro_datasets._typing import JSONPreview

from dermascreen.io import save_torch


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
        save_torch(data, self._filepath)

    def preview(self) -> JSONPreview:
        """The checkpoint without its weights: configs and numbers as saved, tensors as shapes.

        ``mmap`` maps the file instead of reading it, so a large model previews in milliseconds.
        """
        data = torch.load(self._filepath, map_location="cpu", weights_only=True, mmap=True)
        return JSONPreview(json.dumps(_outline(data), indent=2, default=str))

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


def _outline(value: Any) -> Any:
    """``value`` with each tensor replaced by its shape and dtype and each state dict by a count."""
    if isinstance(value, torch.Tensor):
        return f"tensor {list(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    if isinstance(value, dict):
        if value and all(isinstance(v, torch.Tensor) for v in value.values()):
            return f"{len(value)} tensors, {sum(v.numel() for v in value.values())} values"
        return {str(k): _outline(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_outline(v) for v in value]
    return value
