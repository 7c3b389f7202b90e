"""``fit`` trains a classifier in Ignite engines; ``predict_proba`` runs it. Config keys: docs/training.md.

Runs unchanged in one process or data-parallel under ``torchrun`` / ``idist.Parallel``: the model,
optimizer and train loader go through ``ignite.distributed``.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.utils import manual_seed
from timm.optim import param_groups_layer_decay
from torch import nn

from dermascreen.models.supervision import SummedClasses
from dermascreen.training.augment import BatchAugment
from dermascreen.training.checkpoint import TrainingCheckpoint, describe_model, job_description
from dermascreen.training.data import check_split, eval_batches, normalization_tensors, to_model_input, train_batches
from dermascreen.training.device import (describe_hardware, hardware, kernel_settings, resolve_device,
                                         resolve_precision)
from dermascreen.training.engines import (Handlers, LiveLog, attach_handlers, create_evaluator, create_trainer,
                                          metric_names)
from dermascreen.training.schedules import warmup_cosine

logger = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "epochs": 20,
    "batch_size": 64,
    "lr": 1e-3,
    "optimizer": "adam",  # adam (weight_decay is an L2 term, as Keras') or adamw (decoupled weight decay)
    "lr_schedule": "constant",  # constant; onecycle or warmup_cosine: per step, warm up to lr, anneal (cosine)
    "warmup_epochs": 0,  # warmup_cosine: linear warmup over this many epochs (MAE fine-tuning: 5)
    "weight_decay": 0.0,
    # < 1: layer-wise lr decay (BEiT/MAE fine-tuning), a layer's lr = lr * layer_decay ** (layers above
    # it), and no weight decay on biases and norms; needs a model with timm's ``group_matcher``.
    "layer_decay": 1.0,
    "label_smoothing": 0.0,
    "patience": 5,
    "monitor": None,  # recall for the binary task, balanced_accuracy for the 7 classes
    "mode": "max",
    "min_specificity": 0.5,
    "target_recall": 0.90,  # the recall target of the binary metric spec_at_recall
    "augment": None,
    "seed": 42,
    "device": "auto",
    "precision": "auto",
    "progress": "auto",  # true, false, or auto: progress bars when stderr is a terminal
    "compile": False,  # torch.compile the training model (docs/training.md: where it pays)
    "max_train_batches": None,
    "checkpoint_every_s": 300,
}
# keys that change how a run is shown, executed or saved, not what it computes: a resume may change them
RUNTIME_KEYS = ("progress", "compile", "checkpoint_every_s")
NUM_CLASSES = {"binary": 2, "labels": 7}
OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
LR_SCHEDULES = ("constant", "onecycle", "warmup_cosine")


@dataclass
class FitResult:
    """``state_dict``: weights (CPU) of the best epoch; ``best_epoch`` None means no epoch passed the
    specificity guard, and then ``state_dict``/``best_metrics`` are the last epoch's.
    ``stop_reason``: ``max_epochs``, ``early_stopping`` or ``nan_loss``. ``hardware``: the device,
    precision and device model used (``training.device.hardware``)."""

    state_dict: dict[str, torch.Tensor]
    history: list[dict]
    best_epoch: int | None
    best_metrics: dict
    stopped_early: bool
    stop_reason: str
    hardware: dict[str, str]


def fit(model: nn.Module, train: dict, val: dict, config: dict, class_weights: list[float] | None,
        normalization: dict, label_key: str = "binary", checkpoint_dir: str | Path | None = None,
        model_config: dict | None = None, live: LiveLog | None = None) -> FitResult:
    """Train ``model`` on ``train``, select on ``val``; the model ends holding the returned weights.

    With ``checkpoint_dir``, the run saves its state (at the end of an epoch, at most every
    ``checkpoint_every_s`` seconds, and at the end) and, started again with the same arguments,
    resumes from the last state saved (or returns the stored result of a finished run).
    ``model_config``: the config ``model`` was built from (``build_model``); it is part of what
    makes a saved state this job's, so give it whenever there is one. ``live``: where the per-epoch
    history goes for DVCLive (``engines.LiveLog``).

    A ``SummedClasses`` model (model config ``supervision: labels``) trains its 7-class network
    on ``train["labels"]``, each fine class weighted by the binary weight of its malignancy, and is
    evaluated and selected as the binary model it is, on ``val[label_key]``.
    """
    if label_key not in NUM_CLASSES:
        raise ValueError(f"label_key: expected one of {sorted(NUM_CLASSES)}, got {label_key!r}")
    num_classes = NUM_CLASSES[label_key]
    cfg = resolve_config(config, num_classes)
    fine = isinstance(model, SummedClasses)
    if fine and label_key != "binary":
        raise ValueError(f"label_key: a model with supervision=labels is a binary model; got {label_key!r}")
    train_key = "labels" if fine else label_key
    check_split(train, "train", train_key, NUM_CLASSES[train_key])
    check_split(val, "val", label_key, num_classes)
    device = idist.device() if idist.get_world_size() > 1 else resolve_device(cfg["device"])
    precision = resolve_precision(device, cfg["precision"])
    channels_last = precision == "bf16"  # channels_last pays off together with bf16 convolutions
    used = hardware(device, precision)
    logger.info("training on %s", describe_hardware(used))
    manual_seed(cfg["seed"] + idist.get_rank())  # ranks draw different augmentations and dropout masks

    with kernel_settings(device):
        model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
        train_model = model.net if fine else model
        train_model = idist.auto_model(train_model) if idist.get_world_size() > 1 else train_model
        if cfg["compile"]:
            train_model = torch.compile(train_model)
        optimizer = idist.auto_optim(OPTIMIZERS[cfg["optimizer"]](_param_groups(model, cfg), lr=cfg["lr"],
                                                                  weight_decay=cfg["weight_decay"]))
        loss_fn = nn.CrossEntropyLoss(weight=_class_weights(class_weights, num_classes, device))
        train_weights = model.fine_class_weights(class_weights) if fine and class_weights is not None else class_weights
        train_loss_fn = nn.CrossEntropyLoss(weight=_class_weights(train_weights, NUM_CLASSES[train_key], device),
                                            label_smoothing=cfg["label_smoothing"])
        batches = train_batches(train, train_key, cfg["batch_size"], device, cfg["seed"], cfg["max_train_batches"])
        scheduler = _lr_scheduler(optimizer, cfg, len(batches))
        trainer = create_trainer(train_model, optimizer, train_loss_fn, device, normalization,
                                 BatchAugment.from_config(cfg["augment"]).to(device), precision, channels_last,
                                 scheduler)
        evaluator = create_evaluator(model, loss_fn, device, normalization, num_classes, precision, channels_last,
                                     cfg["target_recall"])
        handlers = attach_handlers(trainer, evaluator, model, optimizer,
                                   eval_batches(val, label_key, cfg["batch_size"], device),
                                   monitor=cfg["monitor"], mode=cfg["mode"], min_specificity=cfg["min_specificity"],
                                   patience=cfg["patience"], progress=show_progress(cfg["progress"]), live=live)
        # the permutation of epoch e depends only on (seed, e): what makes a resumed epoch match
        trainer.add_event_handler(Events.EPOCH_STARTED, lambda engine: batches.set_epoch(engine.state.epoch - 1))

        if checkpoint_dir is not None:
            checkpoint = _attach_checkpoint(checkpoint_dir, trainer, model, model_config, optimizer, scheduler,
                                            handlers, cfg, train, val, class_weights, normalization,
                                            (train_key, label_key), device, precision)
            if checkpoint.restore():
                # killed after saving its last epoch but before marking itself finished: finished too
                stop_reason = checkpoint.stop_reason or _stop_reason(trainer, handlers)
                if stop_reason is not None:
                    logger.info("%s: the run is over (%s), returning its stored result", checkpoint.path,
                                stop_reason)
                    if live is not None:
                        live.write(handlers.history.rows)
                    return _result(model, handlers, stop_reason, used)
                logger.info("resuming from %s after epoch %d", checkpoint.path, trainer.state.epoch)
        trainer.run(batches, max_epochs=cfg["epochs"])
        return _result(model, handlers, _stop_reason(trainer, handlers) or "max_epochs", used)


def resolve_config(config: dict, num_classes: int) -> dict:
    """``config`` over ``DEFAULTS``, checked: unknown keys and impossible values are errors."""
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"training config: unknown key(s) {unknown}; known keys are {sorted(DEFAULTS)}")
    cfg = {**DEFAULTS, **config}
    monitor = cfg["monitor"] or ("recall" if num_classes == 2 else "balanced_accuracy")
    cfg["monitor"] = monitor.removeprefix("val_")
    names = metric_names(num_classes)
    if cfg["monitor"] not in names:
        raise ValueError(f"training config: monitor {monitor!r} is not a validation metric; choose from {names}")
    for key, allowed in (("optimizer", tuple(OPTIMIZERS)), ("lr_schedule", LR_SCHEDULES)):
        if cfg[key] not in allowed:
            raise ValueError(f"training config: {key} must be one of {', '.join(allowed)}, got {cfg[key]!r}")
    smoothing = cfg["label_smoothing"]
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) or not 0.0 <= smoothing < 1.0:
        raise ValueError(f"training config: label_smoothing must be in [0, 1), got {smoothing!r}")
    if cfg["mode"] not in ("max", "min"):
        raise ValueError(f"training config: mode must be 'max' or 'min', got {cfg['mode']!r}")
    for key in ("epochs", "batch_size", "patience"):
        _check_positive_int(cfg, key)
    if not 0.0 < cfg["target_recall"] <= 1.0:
        raise ValueError(f"training config: target_recall must be in (0, 1], got {cfg['target_recall']!r}")
    if isinstance(cfg["warmup_epochs"], bool) or not isinstance(cfg["warmup_epochs"], int) \
            or not 0 <= cfg["warmup_epochs"] < cfg["epochs"]:
        raise ValueError(f"training config: warmup_epochs must be an integer in [0, epochs), got {cfg['warmup_epochs']!r}")
    decay = cfg["layer_decay"]
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 < decay <= 1.0:
        raise ValueError(f"training config: layer_decay must be in (0, 1], got {decay!r}")
    if cfg["max_train_batches"] is not None:
        _check_positive_int(cfg, "max_train_batches")
    if cfg["progress"] not in (True, False, "auto"):
        raise ValueError(f"training config: progress must be true, false or auto, got {cfg['progress']!r}")
    every = cfg["checkpoint_every_s"]
    if isinstance(every, bool) or not isinstance(every, (int, float)) or not every >= 0:
        raise ValueError(f"training config: checkpoint_every_s must be a number of seconds >= 0, got {every!r}")
    return cfg


def predict_proba(model: nn.Module, images_uint8: np.ndarray, normalization: dict, batch_size: int = 256,
                  device: str = "auto") -> np.ndarray:
    """Class probabilities (N, C) float64 for uint8 images (N, H, W, 3); leaves ``model`` in eval mode on ``device``."""
    images = np.asarray(images_uint8)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"predict_proba: images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    target = resolve_device(device)
    mean, std = normalization_tensors(normalization, target)
    model.to(target).eval()
    batches = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(images[start:start + batch_size]).to(target)
            logits = model(to_model_input(batch, mean, std, channels_last=False))  # (B, C)
            batches.append(torch.softmax(logits.double(), dim=1).cpu())  # double, as the evaluator
    return torch.cat(batches).numpy()


def _attach_checkpoint(directory: str | Path, trainer: Engine, model: nn.Module, model_config: dict | None,
                       optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler | None,
                       handlers: Handlers, cfg: dict, train: dict, val: dict, class_weights: list[float] | None,
                       normalization: dict, label_keys: tuple[str, str], device: torch.device,
                       precision: str) -> TrainingCheckpoint:
    """Save at the end of an epoch when ``checkpoint_every_s`` have passed (after the evaluation,
    so nothing random happens before the next epoch starts) and when the run ends, marking it finished."""
    settings = {"training": {k: v for k, v in cfg.items() if k not in RUNTIME_KEYS},
                "model": describe_model(model, model_config), "class_weights": class_weights, "normalization": normalization, "label_key": label_keys[1],
                "device": device.type, "precision": precision, "world_size": idist.get_world_size()}
    data = {f"{name}_{key}": split[key] for name, split, label_key in (("train", train, label_keys[0]),
                                                                       ("val", val, label_keys[1]))
            for key in ("images", label_key)}
    # The initial weights too: a run that starts from other weights (another seed or init
    # checkpoint) is another job, not one to resume.
    job = job_description(settings, data, model.state_dict())
    objects = {"trainer": trainer, "model": model, "optimizer": optimizer,
               "early_stopping": handlers.early_stopping, "history": handlers.history}
    if scheduler is not None:
        objects["lr_scheduler"] = scheduler
    checkpoint = TrainingCheckpoint(directory, objects, handlers.best, job, every_s=cfg["checkpoint_every_s"])

    @trainer.on(Events.EPOCH_COMPLETED)
    def save_if_due(engine: Engine) -> None:
        if _stop_reason(engine, handlers) is None:  # else the run ends now, and COMPLETED saves
            checkpoint.save_if_due()

    trainer.add_event_handler(Events.COMPLETED, lambda engine: checkpoint.save(_stop_reason(engine, handlers)))
    return checkpoint


def _stop_reason(trainer: Engine, handlers: Handlers) -> str | None:
    """Why the run is over, from the state of its objects; None while it should go on."""
    if not math.isfinite(trainer.state.metrics.get("train_loss", 0.0)):  # none yet after a restore
        return "nan_loss"
    if handlers.early_stopping.counter >= handlers.early_stopping.patience:
        return "early_stopping"
    if trainer.state.epoch >= trainer.state.max_epochs:
        return "max_epochs"
    return None


def _result(model: nn.Module, handlers: Handlers, stop_reason: str, used: dict[str, str]) -> FitResult:
    best = handlers.best
    if best.weights is None:
        logger.warning("no epoch passed the specificity guard: returning the last epoch's weights")
        weights = {k: t.detach().to("cpu", copy=True) for k, t in model.state_dict().items()}
        metrics = best.last_metrics
    else:
        weights, metrics = best.weights, best.metrics
        model.load_state_dict(weights)
    return FitResult(state_dict=weights, history=list(handlers.history.rows), best_epoch=best.epoch,
                     best_metrics=metrics, stopped_early=stop_reason == "early_stopping", stop_reason=stop_reason,
                     hardware=used)


def _lr_scheduler(optimizer: torch.optim.Optimizer, cfg: dict,
                  steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The per-step learning-rate schedule (``create_trainer`` steps it), None for a constant lr.

    ``onecycle``: torch's OneCycleLR over ``epochs`` x steps, the lr warming up from lr/25 to
    ``lr`` over the first 30% and annealing to ~0 (cosine). ``warmup_cosine`` (MAE fine-tuning, the
    pretraining engine's schedule): linear warmup over ``warmup_epochs``, then a half cosine to 0. Both
    scale each parameter group's own lr (layer decay). Early stopping may end them sooner.
    """
    total = cfg["epochs"] * steps_per_epoch
    if cfg["lr_schedule"] == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                                   total_steps=total)
    if cfg["lr_schedule"] == "warmup_cosine":
        warmup = cfg["warmup_epochs"] * steps_per_epoch
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, warmup, total))
    return None


def _param_groups(model: nn.Module, cfg: dict) -> list[nn.Parameter] | list[dict]:
    """The trainable parameters, in timm's layer-decay groups when ``layer_decay`` < 1."""
    params = _trainable(model)
    if cfg["layer_decay"] >= 1.0:
        return params
    if not hasattr(model, "group_matcher"):
        raise ValueError(f"training config: layer_decay needs a model with layers to decay (a ViT); "
                         f"{type(model).__name__} has none")
    groups = param_groups_layer_decay(model, weight_decay=cfg["weight_decay"], layer_decay=cfg["layer_decay"])
    for group in groups:
        group["lr"] = cfg["lr"] * group.pop("lr_scale")
    return groups


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{type(model).__name__}: no trainable parameter (check the model's unfreeze setting)")
    return params


def _class_weights(class_weights: list[float] | None, num_classes: int, device: torch.device) -> torch.Tensor | None:
    if class_weights is None:
        return None
    weights = torch.tensor(class_weights, dtype=torch.float32)
    if weights.shape != (num_classes,) or bool((weights <= 0).any()):
        raise ValueError(f"class_weights: expected {num_classes} positive numbers, got {class_weights}")
    return weights.to(device)


def show_progress(progress: bool | str) -> bool:
    """``auto``: progress bars where output goes to a terminal, per-epoch log lines alone elsewhere."""
    return sys.stderr.isatty() if progress == "auto" else bool(progress)


def _check_positive_int(cfg: dict, key: str) -> None:
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"training config: {key} must be a positive integer, got {value!r}")
