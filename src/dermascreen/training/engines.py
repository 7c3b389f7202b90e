"""Ignite engines: the trainer, the evaluator, and every training handler attached in one place.

Shaped like pytorch-ignite's cifar10 example: small step functions, one factory per engine,
``attach_handlers`` wiring evaluation, history, early stopping, best-model tracking and progress.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import EarlyStopping, ProgressBar
from ignite.metrics import Average, Metric
from torch import nn

from dermascreen.evaluation.metrics import TARGET_RECALL, binary_metrics, multiclass_metrics, operating_specificity
from dermascreen.io import atomic_write
from dermascreen.training.data import normalization_tensors, to_model_input
from dermascreen.training.device import autocast_context

logger = logging.getLogger(__name__)


def create_trainer(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: nn.Module,
                   device: torch.device, normalization: dict, augment: nn.Module | None = None,
                   precision: str = "fp32", channels_last: bool = False,
                   scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> Engine:
    """An Engine whose step trains on one (uint8 images, labels) batch; ``state.metrics["train_loss"]``
    is the epoch's mean batch loss (averaged over ranks).

    Nothing in the step waits for the device: the loss stays a device tensor, summed on the device
    and read once per epoch. The model enters training mode once per epoch (the evaluator leaves it
    in eval mode), not on every step. ``scheduler``, if any, steps after every optimizer step.
    """
    mean, std = normalization_tensors(normalization, device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def train_step(engine: Engine, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        images, targets = batch  # (B, H, W, 3) uint8, (B,) int64, on the device
        x = to_model_input(images.to(device, non_blocking=True), mean, std, channels_last)  # (B, 3, H, W)
        if augment is not None:
            x = augment(x).contiguous(memory_format=memory_format)  # grid_sample returns NCHW
        with autocast_context(device, precision):
            logits = model(x)  # (B, C)
        loss = loss_fn(logits.float(), targets.to(device, non_blocking=True))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        return loss.detach()

    trainer = Engine(train_step)
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda _: model.train())
    Average(output_transform=lambda loss: loss, device=device).attach(trainer, "train_loss")
    return trainer


class ValidationMetrics(Metric):
    """Keeps the epoch's logits and targets on the device, then, once: the loss over the whole
    epoch and ``evaluation.metrics`` on the softmax probabilities: ``binary_metrics`` (p =
    probability of class 1) for two classes, ``multiclass_metrics`` otherwise.

    Nothing leaves the device per batch (a copy to the host or a ``.item()`` waits for it). One
    ``loss_fn`` call on the whole epoch is its exact value: a class-weighted cross-entropy divides by
    the summed weights of the batch it is given, so a mean of batch values would not be.
    Every rank evaluates the whole validation set (see ``data.eval_batches``), so nothing is reduced.
    ``target_recall``: the recall target of the binary ``spec_at_recall``.
    """

    def __init__(self, loss_fn: nn.Module, num_classes: int, target_recall: float = TARGET_RECALL):
        self.loss_fn, self.num_classes, self.target_recall = loss_fn, num_classes, target_recall
        super().__init__(metrics_result_mode="flatten")

    def reset(self) -> None:
        self._logits: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []

    def update(self, output: tuple[torch.Tensor, torch.Tensor]) -> None:
        logits, targets = output
        self._logits.append(logits.detach())
        self._targets.append(targets.detach())

    def compute(self) -> dict:
        logits, targets = torch.cat(self._logits), torch.cat(self._targets)  # (N, C), (N,)
        with torch.no_grad():
            loss = self.loss_fn(logits, targets).item()
        proba = torch.softmax(logits.double(), dim=1).cpu().numpy()
        y = targets.cpu().numpy()
        if self.num_classes == 2:
            return {**binary_metrics(y, proba[:, 1], target_recall=self.target_recall), "loss": loss}
        return {**multiclass_metrics(y, proba), "loss": loss}


def create_evaluator(model: nn.Module, loss_fn: nn.Module, device: torch.device, normalization: dict,
                     num_classes: int, precision: str = "fp32", channels_last: bool = False,
                     target_recall: float = TARGET_RECALL) -> Engine:
    """An Engine whose ``state.metrics`` after a run hold every metric of ``evaluation.metrics`` plus ``loss``."""
    mean, std = normalization_tensors(normalization, device)

    def eval_step(engine: Engine, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = batch
        with torch.no_grad(), autocast_context(device, precision):
            logits = model(to_model_input(images.to(device, non_blocking=True), mean, std, channels_last))
        return logits.float(), targets.to(device, non_blocking=True)  # (B, C), (B,)

    evaluator = Engine(eval_step)
    evaluator.add_event_handler(Events.STARTED, lambda _: model.eval())
    ValidationMetrics(loss_fn, num_classes, target_recall).attach(evaluator, "validation")
    return evaluator


def metric_names(num_classes: int) -> list[str]:
    """The scalar metrics an evaluator reports, to validate ``monitor`` before training starts."""
    y, proba = np.array([0, 1]), np.array([[0.8, 0.2], [0.3, 0.7]])
    if num_classes == 2:
        metrics = binary_metrics(y, proba[:, 1])
    else:
        metrics = multiclass_metrics(y, np.pad(proba, ((0, 0), (0, num_classes - 2))))
    return sorted([name for name, value in metrics.items() if not isinstance(value, list)] + ["loss"])


def guarded_score(metrics: dict, monitor: str, mode: str, min_specificity: float) -> float:
    """The monitored metric as a higher-is-better score; -inf when the epoch may not become best.

    The specificity guard: recall alone is maximised (1.0) by a model that calls every lesion
    malignant, so a binary epoch whose specificity (``operating_specificity``: at 0.5, or at the
    recall target for ``spec_at_recall``) is below ``min_specificity`` scores -inf. Multiclass
    metrics have no specificity and are not guarded. A NaN metric also scores -inf.
    """
    if "specificity" in metrics and operating_specificity(metrics, monitor) < min_specificity:
        return -math.inf
    value = float(metrics[monitor])
    if math.isnan(value):
        return -math.inf
    return value if mode == "max" else -value


def ranking_key(metrics: dict, monitor: str, mode: str, min_specificity: float) -> tuple[float, float, float]:
    """What "best epoch" maximises: the guarded score, then AUC (ROC AUC for binary), then -loss."""
    auc = metrics.get("roc_auc", metrics.get("auc", math.nan))  # binary, multiclass
    return (guarded_score(metrics, monitor, mode, min_specificity),
            -math.inf if math.isnan(auc) else float(auc),
            -float(metrics["loss"]))


class BestModel:
    """Keeps a CPU copy of the weights and validation metrics of the best epoch so far.

    An epoch replaces the best only with a strictly greater ``key_fn(metrics)``, so on a complete
    tie the earlier epoch stays; an epoch whose key starts with -inf (the guard) is never best.
    """

    def __init__(self, model: nn.Module, key_fn: Callable[[dict], tuple], trainer: Engine):
        self.model, self.key_fn, self.trainer = model, key_fn, trainer
        self.key: tuple | None = None
        self.epoch: int | None = None
        self.metrics: dict = {}
        self.weights: dict[str, torch.Tensor] | None = None
        self.last_metrics: dict = {}  # what a run reports when no epoch passes the guard

    def __call__(self, evaluator: Engine) -> None:
        self.last_metrics = _epoch_metrics(evaluator.state.metrics)
        key = self.key_fn(evaluator.state.metrics)
        if key[0] == -math.inf or (self.key is not None and key <= self.key):
            return
        self.key, self.epoch, self.metrics = key, self.trainer.state.epoch, self.last_metrics
        self.weights = {name: t.detach().to("cpu", copy=True) for name, t in self.model.state_dict().items()}

    def state_dict(self) -> dict:
        return {"key": self.key, "epoch": self.epoch, "metrics": self.metrics, "weights": self.weights,
                "last_metrics": self.last_metrics}

    def load_state_dict(self, state: dict) -> None:
        self.key = None if state["key"] is None else tuple(state["key"])
        self.epoch, self.metrics, self.weights = state["epoch"], state["metrics"], state["weights"]
        self.last_metrics = state["last_metrics"]


class History:
    """One row per epoch: train loss, every scalar validation metric (``val_`` prefix), lr, times."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def record(self, trainer: Engine, evaluator: Engine, optimizer: torch.optim.Optimizer) -> dict:
        scalars = {f"val_{k}": v for k, v in _epoch_metrics(evaluator.state.metrics).items()
                   if not isinstance(v, list)}
        row = {"epoch": trainer.state.epoch, "train_loss": float(trainer.state.metrics["train_loss"]), **scalars,
               "lr": max(group["lr"] for group in optimizer.param_groups),  # the top layer's (layer decay)
               "train_time_s": trainer.state.times[Events.EPOCH_COMPLETED.name],
               "val_time_s": evaluator.state.times[Events.COMPLETED.name]}
        self.rows.append(row)
        return row

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict) -> None:
        self.rows = list(state["rows"])


class LiveLog:
    """Per-epoch metrics of one run in a DVCLive directory (a grid run's own, or one that the
    pretraining methods share; ``dvc exp show``, ``dvc plots diff``): DVCLive's ``Live.log_metric`` writes each curve,
    ``plots/metrics/<run>/<key>.tsv`` (step = epoch), and ``metrics.json`` holds
    ``{run: {key: value of the last epoch}}``.

    The first write replaces the run's curves with the whole history (a resumed run's restored
    epochs included); each later write appends the epochs not yet written. Runs side by side
    (Kedro's ParallelRunner) share ``metrics.json``: each merges its own entry under a lock on the
    directory. Rank 0 writes; non-finite values are left out (JSON has no NaN).
    """

    def __init__(self, directory: str | Path, run: str):
        self.directory, self.run = Path(directory), run
        self._live = None
        self._written = 0

    def write(self, rows: list[dict]) -> None:
        if idist.get_rank() != 0:
            return
        if self._live is None:
            from dvclive import Live  # imports DVC: only runs that log pay for it

            shutil.rmtree(self.directory / "plots" / "metrics" / self.run, ignore_errors=True)
            self._live = Live(str(self.directory), resume=True, report=None, save_dvc_exp=False, dvcyaml=None)
        last = {}
        for row in rows[self._written:]:
            self._live.step = row["epoch"]
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                    self._live.log_metric(f"{self.run}/{key}", value)
                    last[key] = value
        self._written = len(rows)
        if last:
            self._merge_summary(last)

    def _merge_summary(self, last: dict) -> None:
        """``metrics.json`` with this run's entry replaced, written whole (``atomic_write``) under the lock."""
        metrics = Path(self._live.metrics_file)
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            summary = json.loads(metrics.read_text()) if metrics.exists() else {}
            summary.pop("step", None)  # DVCLive's, meaningless across runs
            summary[self.run] = {"epoch": self._live.step, **last}
            with atomic_write(metrics, suffix=".json") as tmp:
                tmp.write_text(json.dumps(summary, indent=2) + "\n")
        finally:
            os.close(fd)  # releases the lock


@dataclass
class Handlers:
    """The stateful handlers a checkpoint must save and a result is read from."""

    early_stopping: EarlyStopping
    best: BestModel
    history: History


def attach_handlers(trainer: Engine, evaluator: Engine, model: nn.Module, optimizer: torch.optim.Optimizer,
                    val_batches: Iterable, *, monitor: str, mode: str, min_specificity: float,
                    patience: int, progress: bool, live: LiveLog | None = None) -> Handlers:
    """Evaluate on ``val_batches`` after every epoch, record history, stop on a non-finite epoch
    loss or without improvement for ``patience`` epochs, keep the best weights; progress bars on
    rank 0 when ``progress``, a log line per epoch always; with ``live``, the history to DVCLive every epoch.

    ``model`` is the unwrapped module (not the DDP wrapper) that the evaluator runs. The loss is
    checked once per epoch, not per step (a per-step check waits for the device every step): a
    NaN stops the run at the end of its epoch, and that epoch is neither evaluated nor kept.
    """
    handlers = Handlers(
        early_stopping=EarlyStopping(patience, lambda e: guarded_score(e.state.metrics, monitor, mode, min_specificity),
                                     trainer),
        best=BestModel(model, lambda m: ranking_key(m, monitor, mode, min_specificity), trainer),
        history=History(),
    )
    evaluator.add_event_handler(Events.COMPLETED, handlers.best)
    evaluator.add_event_handler(Events.COMPLETED, handlers.early_stopping)

    @trainer.on(Events.EPOCH_COMPLETED)
    def evaluate(engine: Engine) -> None:
        if not math.isfinite(engine.state.metrics["train_loss"]):
            logger.warning("epoch %d: non-finite training loss; stopping", engine.state.epoch)
            engine.terminate()
            return
        _broadcast_buffers(model)
        evaluator.run(val_batches)
        row = handlers.history.record(engine, evaluator, optimizer)
        logger.info("epoch %d: train_loss %.4f, val_%s %.4f", row["epoch"], row["train_loss"], monitor,
                    row[f"val_{monitor}"])
        if live is not None:
            live.write(handlers.history.rows)

    if progress and idist.get_rank() == 0:
        ProgressBar(persist=False).attach(trainer)
        ProgressBar(persist=True).attach(trainer, event_name=Events.EPOCH_COMPLETED,
                                         closing_event_name=Events.COMPLETED)
    return handlers


def _broadcast_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's BatchNorm statistics, so all ranks evaluate (and decide on) one model.

    DDP keeps parameters identical but each rank updates its running statistics on its own shard.
    """
    if idist.get_world_size() > 1:
        for buffer in model.buffers():
            buffer.copy_(idist.broadcast(buffer, src=0))


def _epoch_metrics(state_metrics: dict) -> dict:
    """A copy of the evaluator's metrics as plain Python values (ignite's loss may be a numpy float)."""
    return {k: (v if isinstance(v, (list, int)) else float(v)) for k, v in state_metrics.items()}
