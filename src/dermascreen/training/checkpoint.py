"""Resumable training: the whole training state in one file, rewritten atomically after every epoch.

The file holds the ``state_dict`` of every object handed in (trainer, model, optimizer, early
stopping, best model, history), the RNG states of every rank, a fingerprint of the job and, once
the run is over, why it stopped. Restoring all of it makes a run that was killed and started
again continue exactly as if it had never stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch

from dermascreen.io import atomic_write

FILENAME = "training_state.pt"
logger = logging.getLogger(__name__)


def rng_state() -> dict[str, Any]:
    """The python, numpy, torch and CUDA generator states, in types ``torch.load(weights_only=True)`` reads."""
    numpy_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {**numpy_state, "state": {"key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                                           "pos": numpy_state["state"]["pos"]}},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    np.random.set_state({**numpy_state, "state": {"key": numpy_state["state"]["key"].numpy().astype(np.uint32),
                                                  "pos": numpy_state["state"]["pos"]}})
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def fingerprint(settings: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    """sha256 of the job's settings (JSON) and data: a checkpoint only resumes the job that wrote it."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=repr).encode())
    for name in sorted(arrays):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()


class TrainingCheckpoint:
    """Saves and restores ``objects`` (each with ``state_dict``/``load_state_dict``) in ``directory``."""

    def __init__(self, directory: str | Path, objects: dict[str, Any], job_fingerprint: str):
        self.path = Path(directory) / FILENAME
        self.objects = objects
        self.fingerprint = job_fingerprint
        self.stop_reason: str | None = None

    def save(self, stop_reason: str | None = None) -> None:
        """Write the current state; ``stop_reason`` marks the run finished.

        Under ``torch.distributed`` every rank must call it (the RNG states are gathered); rank 0 writes.
        """
        rng_states = idist.all_gather(rng_state())  # one entry per rank
        if idist.get_rank() != 0:
            return
        state = {"fingerprint": self.fingerprint, "stop_reason": stop_reason, "rng": rng_states,
                 "objects": {name: obj.state_dict() for name, obj in self.objects.items()}}
        with atomic_write(self.path, suffix=".pt") as tmp:
            torch.save(state, tmp)

    def restore(self) -> bool:
        """Load the saved state into the objects and this rank's RNGs; False when there is no file
        or it belongs to another job (it is overwritten after the first epoch)."""
        if not self.path.exists():
            return False
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many types for a truncated or foreign file
            raise ValueError(f"{self.path}: not a readable training checkpoint ({error}); "
                             "delete it to start the run over") from error
        if state.get("fingerprint") != self.fingerprint:
            # A changed parameter (e.g. `dvc exp run -S ...`) makes the old state useless: start over.
            logger.warning("%s was written by a different training job (other config, data, model or "
                           "world size): starting this run from scratch", self.path)
            return False
        for name, obj in self.objects.items():
            obj.load_state_dict(state["objects"][name])
        set_rng_state(state["rng"][idist.get_rank()])
        self.stop_reason = state["stop_reason"]
        return True
