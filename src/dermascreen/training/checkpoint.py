"""Resumable training: a small state file rewritten now and then, the best weights beside it.

``training_state.pt`` holds the ``state_dict`` of every object handed in (trainer, model,
optimizer, early stopping, best-model bookkeeping, history), the RNG states of every rank, a
description of the job and, once the run is over, why it stopped. The best epoch's weights live in
their own file, ``best_weights.<job>.epoch<N>.pt``, written only when the best epoch changes.
Restoring all of it makes a run that was killed and started again continue exactly as if it had
never stopped, from the last state written.

A state resumes only the job that wrote it: the job description covers the settings (training
config, model config and structure, data handling), the source code of the model and training
packages, the data and the initial weights. When any of them differs the run starts over, with a
log line naming what differs.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import logging
import random
import re
import time
from pathlib import Path
from typing import Any, Mapping

import ignite.distributed as idist
import numpy as np
import torch

from dermascreen.io import remove_temporaries, save_torch

FILENAME = "training_state.pt"
# The code a training run executes (in the dermascreen package): a change in it makes a saved
# state another job's.
CODE = ("models", "training", "evaluation/metrics.py")
PACKAGE = Path(__file__).resolve().parents[1]
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


def job_description(settings: Mapping[str, Any], data: Mapping[str, np.ndarray],
                    initial_weights: Mapping[str, torch.Tensor], code: tuple[str, ...] = CODE) -> dict[str, Any]:
    """What makes two runs the same job, in plain types a checkpoint can store and compare.

    ``settings``: nested and JSON-able (other values count by their ``repr``), stored flat with
    dotted keys so that a difference can be named; ``code``: one digest per source file of
    ``code`` (the training code by default); ``data`` and ``initial_weights``: one digest each.
    """
    return {"settings": _flatten(json.loads(json.dumps(settings, sort_keys=True, default=repr))),
            "code": dict(code_digests(code=code)),
            "data": _arrays_digest(data),
            "initial_weights": _arrays_digest({name: tensor.detach().cpu().float().numpy()
                                               for name, tensor in initial_weights.items()})}


def describe_model(model: torch.nn.Module, config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The model as configured and as built, for ``job_description``'s settings: its config, its
    class, a digest of its modules' ``repr`` (it shows dropout and drop-path rates, layer shapes)
    and of the names of its trainable parameters (``unfreeze``). A module built by hand, without a
    config, is still told apart by the last three."""
    modules = re.sub(r" at 0x[0-9a-fA-F]+", "", repr(model))  # an object's address differs in every process
    trainable = " ".join(name for name, parameter in model.named_parameters() if parameter.requires_grad)
    return {"config": config, "class": type(model).__name__,
            "modules": hashlib.sha256(modules.encode()).hexdigest()[:16],
            "trainable": hashlib.sha256(trainable.encode()).hexdigest()[:16]}


def fingerprint(job: Mapping[str, Any]) -> str:
    """sha256 of a ``job_description``."""
    return hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()


def job_differences(saved: Mapping[str, Any] | None, current: Mapping[str, Any]) -> str:
    """What differs between two job descriptions, for a person: changed setting keys, changed
    source files, data, initial weights."""
    if not isinstance(saved, Mapping) or set(saved) != set(current):
        return "no job description this version can compare (an older version wrote it)"
    parts = []
    settings = _changed_keys(saved["settings"], current["settings"])
    if settings:
        parts.append(f"settings {_first(settings)}")
    code = _changed_keys(saved["code"], current["code"])
    if code:
        parts.append(f"code of {_first(code)}")
    if saved["data"] != current["data"]:
        parts.append("data (train/val arrays)")
    if saved["initial_weights"] != current["initial_weights"]:
        parts.append("initial weights")
    return "; ".join(parts)


@functools.lru_cache(maxsize=4)
def code_digests(package: Path = PACKAGE, code: tuple[str, ...] = CODE) -> dict[str, str]:
    """A digest of each source file of ``code`` (a folder: every ``.py`` file under it) in
    ``package`` (default: the ``dermascreen`` package Python imported), by path relative to it.

    Every file counts, imported yet or not. The digest is of the syntax tree without docstrings:
    editing a comment, a docstring or the layout keeps a saved state valid. Computed once per
    process, close to when the code was imported.
    """
    files = set()
    for name in code:
        path = package / name
        files.update(path.rglob("*.py") if path.is_dir() else [path])
    return {path.relative_to(package).as_posix(): source_digest(path.read_text(encoding="utf-8"))
            for path in sorted(files)}


def source_digest(source: str) -> str:
    """sha256 (16 hex digits) of Python source as the interpreter sees it: its syntax tree without
    docstrings (no comments, no line numbers). A file that does not parse counts by its text."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return hashlib.sha256(source.encode()).hexdigest()[:16]
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16]


class TrainingCheckpoint:
    """Saves and restores a run's state in ``directory``.

    ``objects``: each with ``state_dict``/``load_state_dict``. ``best``: the best-model tracker
    (``engines.BestModel``), or None for a run that keeps no best model (pretraining); its
    ``state_dict()["weights"]`` go to their own file, written only when the best epoch changes.
    ``every_s``: ``save_if_due`` writes at most this often. A new checkpoint removes the temporary
    files that a killed write left in ``directory``.
    """

    def __init__(self, directory: str | Path, objects: dict[str, Any], best: Any | None, job: dict[str, Any],
                 every_s: float):
        self.directory = Path(directory)
        self.path = self.directory / FILENAME
        self.objects, self.best, self.job, self.every_s = objects, best, job, every_s
        self.fingerprint = fingerprint(job)
        self.stop_reason: str | None = None
        self._best_on_disk: int | None = None  # the epoch whose best weights this job has written
        self._last_save = time.monotonic()
        if idist.get_rank() == 0:
            for path in remove_temporaries(self.directory):
                logger.info("removed %s, left by a write that was killed", path)

    def save_if_due(self) -> None:
        """``save()`` when ``every_s`` seconds have passed since the last save (or the start)."""
        due = time.monotonic() - self._last_save >= self.every_s
        if idist.get_world_size() > 1:  # every rank takes part in a save: rank 0's clock decides for all
            due = bool(idist.broadcast(float(due), src=0))
        if due:
            self.save()

    def save(self, stop_reason: str | None = None) -> None:
        """Write the current state; ``stop_reason`` marks the run finished.

        The best weights are written first, under a name of their own, and the other best-weights
        files are deleted only once the state that no longer needs them is on disk: a kill at any
        point leaves a state and the weights it names. Under ``torch.distributed`` every rank must
        call it (the RNG states are gathered); rank 0 writes.
        """
        rng_states = idist.all_gather(rng_state())  # one entry per rank
        self._last_save = time.monotonic()
        if idist.get_rank() != 0:
            return
        best = self.best.state_dict() if self.best is not None else {"epoch": None, "weights": None}
        weights = best.pop("weights")
        if best["epoch"] is not None and best["epoch"] != self._best_on_disk:
            save_torch(weights, self._best_path(best["epoch"]))
            self._best_on_disk = best["epoch"]
        state = {"fingerprint": self.fingerprint, "job": self.job, "stop_reason": stop_reason, "rng": rng_states,
                 "objects": {name: obj.state_dict() for name, obj in self.objects.items()}, "best": best}
        save_torch(state, self.path)
        keep = self._best_path(best["epoch"]) if best["epoch"] is not None else None
        for path in self.directory.glob("best_weights.*.pt"):
            if path != keep:
                path.unlink()

    def restore(self) -> bool:
        """Load the saved state into the objects and this rank's RNGs; False, with a log line saying
        why, when there is no file or it belongs to another job (it is overwritten at the first save)."""
        if not self.path.exists():
            return False
        state = self._load(self.path, "not a readable training checkpoint")
        if state.get("fingerprint") != self.fingerprint:
            # A changed parameter (e.g. `dvc exp run -S ...`) or code makes the old state useless.
            logger.warning("%s: not resumed, it belongs to another job (changed: %s); starting this run from "
                           "scratch", self.path, job_differences(state.get("job"), self.job))
            return False
        for name, obj in self.objects.items():
            obj.load_state_dict(state["objects"][name])
        best = state["best"]
        weights = None
        if best["epoch"] is not None:
            weights = self._load(self._best_path(best["epoch"]), f"the best weights that {FILENAME} names are "
                                                                 "missing or unreadable")
            self._best_on_disk = best["epoch"]
        if self.best is not None:
            self.best.load_state_dict({**best, "weights": weights})
        set_rng_state(state["rng"][idist.get_rank()])
        self.stop_reason = state["stop_reason"]
        return True

    def _best_path(self, epoch: int) -> Path:
        # The job in the name: a file left by another job's unfinished run never passes for this one's.
        return self.directory / f"best_weights.{self.fingerprint[:16]}.epoch{epoch}.pt"

    def _load(self, path: Path, problem: str) -> Any:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many types for a missing, truncated or foreign file
            raise ValueError(f"{path}: {problem} ({error}); delete {self.directory} to start the run over") from error


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> one dict with dotted keys; other values (an empty dict too) stay as they are."""
    if not isinstance(value, dict) or not value:
        return {prefix: value}
    flat = {}
    for key, item in value.items():
        flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    missing = object()
    return sorted(key for key in set(old) | set(new) if old.get(key, missing) != new.get(key, missing))


def _first(names: list[str], limit: int = 8) -> str:
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def _arrays_digest(arrays: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name} {array.dtype.str} {array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
