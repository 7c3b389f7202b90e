"""The Ignite engine every pretraining method runs in, on the training package's machinery.

A method is a ``Pretrainer`` (``PretrainerBase``): it owns its modules and optimisers and a small
``step`` (the process function's body) that takes one batch of normalised images and returns its
losses as device tensors. ``run_pretraining`` draws the batches on the device
(``training.data.SplitBatches``), runs under ``kernel_settings`` (TF32 and cudnn.benchmark on CUDA)
and attaches every handler in one place: the learning rate schedule (linear warmup then cosine, as
MAE), per-epoch loss means read once per epoch and the methods' host-drawn random numbers copied
with ``non_blocking`` (no per-step synchronisation), an error on a non-finite epoch loss, progress
bars, and the resumable state of ``training.checkpoint``.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, ContextManager, Protocol

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar
from torch import nn

from dermascreen.errors import UserError
from dermascreen.models.vit import ViTEncoder
from dermascreen.pretraining.augment import Augment, epoch_generator
from dermascreen.training.checkpoint import TrainingCheckpoint, job_description
from dermascreen.training.data import normalization_tensors, to_model_input, train_batches
from dermascreen.training.device import autocast_context, kernel_settings
from dermascreen.training.engines import LiveLog
from dermascreen.training.schedules import warmup_cosine

logger = logging.getLogger(__name__)
# The code a pretraining run executes: a change in it makes a saved state another job's.
CODE = ("models", "training", "pretraining")


class Pretrainer(Protocol):
    """What the engine needs from a method."""

    mae: nn.Module  # the MaskedAutoencoder whose encoder is the product
    optimizers: list[torch.optim.Optimizer]
    augment: Augment | None  # applied to every training batch (``pretraining.augment``)
    device: torch.device
    precision: str

    def step(self, images: torch.Tensor, progress: float) -> dict[str, torch.Tensor]:
        """One training iteration on images (B, 3, H, W) at ``progress`` in [0, 1) of the run;
        detached scalar losses on the device."""

    def train(self, mode: bool = True) -> Any: ...

    def trained(self) -> dict[str, nn.Module]: ...

    def frozen(self) -> dict[str, nn.Module]: ...

    def job_weights(self) -> dict[str, torch.Tensor]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class PretrainerBase:
    """State shared by every method: ``trained`` modules with their ``optimizers``, ``frozen``
    modules (a guided method's source encoder, an input of the job), the CPU generator that draws
    masks and batches, and a step counter. ``state_dict`` holds all that changes while training."""

    mae: nn.Module
    optimizers: list[torch.optim.Optimizer]
    generator: torch.Generator
    precision: str = "fp32"
    steps: int = 0
    augment: Augment | None = None

    @property
    def device(self) -> torch.device:
        return self.mae.encoder.cls_token.device

    def trained(self) -> dict[str, nn.Module]:
        return {"mae": self.mae}

    def frozen(self) -> dict[str, nn.Module]:
        return {}

    def autocast(self) -> ContextManager:
        """bf16 autocast for the forward passes that are numerically safe in it (losses stay fp32)."""
        return autocast_context(self.device, self.precision)

    def train(self, mode: bool = True) -> "PretrainerBase":
        for module in self.trained().values():
            module.train(mode)
        return self

    def job_weights(self) -> dict[str, torch.Tensor]:
        """Every module's weights, trained and frozen: what a run starts from."""
        return {f"{name}.{key}": tensor for name, module in {**self.trained(), **self.frozen()}.items()
                for key, tensor in module.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        return {"modules": {name: module.state_dict() for name, module in self.trained().items()},
                "optimizers": [optimizer.state_dict() for optimizer in self.optimizers],
                "generator": self.generator.get_state(), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, module in self.trained().items():
            module.load_state_dict(state["modules"][name])
        for optimizer, saved in zip(self.optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(saved)
        self.generator.set_state(state["generator"])
        self.steps = state["steps"]


class ComputeCounter:
    """What a method computes per training step, counted while it trains: forward passes of each of
    its modules (the MAE's ``encoder`` and ``decoder``, each other trained or frozen module) and the
    tokens through every ViT encoder (the MAE's, a guided method's frozen one), which dominate the
    cost. Backward passes are not counted. Saved with the run's state, so a resumed or finished
    run reports the whole run.
    """

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.encoder_tokens = 0
        self.steps = 0

    def attach(self, pretrainer: "Pretrainer") -> list[Any]:
        """Forward hooks on ``pretrainer``'s modules; their handles (``remove()`` them after training)."""
        modules = {**pretrainer.trained(), **pretrainer.frozen()}
        mae = modules.pop("mae")
        modules = {"encoder": mae.encoder, "decoder": mae.decoder, **modules}
        handles = []
        for name, module in modules.items():
            self.calls.setdefault(name, 0)
            if isinstance(module, ViTEncoder):
                # every pass, forward_with_cls_attention's too, runs the last block on all its tokens
                handles.append(module.blocks[-1].register_forward_hook(self._encoder_hook(name)))
            else:
                handles.append(module.register_forward_hook(self._hook(name)))
        return handles

    def count_step(self, _: Any = None) -> None:
        self.steps += 1

    def _hook(self, name: str):
        def count(module: nn.Module, inputs: Any, output: Any) -> None:
            self.calls[name] += 1
        return count

    def _encoder_hook(self, name: str):
        def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: Any) -> None:
            self.calls[name] += 1
            self.encoder_tokens += inputs[0].shape[0] * inputs[0].shape[1]
        return count

    def summary(self, history: list[dict[str, float]]) -> dict[str, Any]:
        """``{"steps", "seconds", "forward_passes_per_step": {module: n}, "encoder_tokens_per_step"}``;
        seconds: the training epochs' time (``history``), without checkpoints and figures."""
        steps = max(self.steps, 1)
        return {"steps": self.steps, "seconds": sum(row["seconds"] for row in history),
                "forward_passes_per_step": {name: calls / steps for name, calls in self.calls.items()},
                "encoder_tokens_per_step": self.encoder_tokens / steps}

    def state_dict(self) -> dict[str, Any]:
        return {"calls": dict(self.calls), "encoder_tokens": self.encoder_tokens, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.calls, self.encoder_tokens, self.steps = dict(state["calls"]), state["encoder_tokens"], state["steps"]


def make_optimizer(modules: nn.Module | list[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with MAE's betas; no decay on biases, norms and tokens (parameters with < 2 dims)."""
    params = list(modules.parameters()) if isinstance(modules, nn.Module) else list(modules)
    decay = [p for p in params if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in params if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=(0.9, 0.95))


class History:
    """One row per epoch: each loss's mean over the iterations that logged it, seconds, images/s."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict) -> None:
        self.rows = list(state["rows"])


class EpochLosses:
    """Sums of each loss on the device and how many iterations logged it; read once per epoch.

    Some losses are logged only on some iterations (MLO-MAE's upper levels): each is a mean where present.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, losses: dict[str, torch.Tensor]) -> None:
        for key, value in losses.items():
            self.sums[key] = self.sums[key] + value if key in self.sums else value.float()
            self.counts[key] = self.counts.get(key, 0) + 1

    def means(self) -> dict[str, float]:
        if not self.sums:
            return {}
        values = torch.stack(list(self.sums.values())).tolist()  # the epoch's one wait for the device
        return {key: value / self.counts[key] for key, value in zip(self.sums, values)}


def run_pretraining(pretrainer: Pretrainer, train_set: dict, normalization: dict[str, list[float]], *,
                    epochs: int, batch_size: int, warmup_epochs: float, seed: int,
                    max_batches: int | None = None, progress: bool = False,
                    checkpoint_dir: str | Path | None = None, checkpoint_every_s: float = 300.0,
                    settings: dict[str, Any] | None = None,
                    live: LiveLog | None = None) -> tuple[list[dict[str, float]], dict[str, Any]]:
    """Train ``pretrainer`` for ``epochs`` over ``train_set`` (``images`` (N, H, W, 3) uint8,
    ``labels``); the per-epoch history and the run's compute (``ComputeCounter.summary``).

    ``max_batches`` caps an epoch (a fresh random subset each epoch): small profiles' budget. With
    ``checkpoint_dir``, the run saves its state (at the end of an epoch, at most every
    ``checkpoint_every_s`` seconds, and at the end) and, started again as the same job, resumes
    from it, or returns the stored history (and compute) of a finished run. The job is
    ``settings`` (the method's configuration), these arguments, the code, the data and every
    module's initial weights (``training.checkpoint``'s fingerprint rules). ``live``: where the
    per-epoch history goes for DVCLive.
    """
    if idist.get_world_size() > 1:
        # its modules are not DDP-wrapped: each process would train its own copy on its share
        raise UserError("pretraining is not data-parallel: run the pretraining pipeline in one process "
                        "(kedro run --pipelines pretraining), not under torchrun")
    device = pretrainer.device
    torch.manual_seed(seed)
    with kernel_settings(device):
        batches = train_batches(train_set, "labels", batch_size, device, seed, max_batches, drop_last=True)
        mean, std = normalization_tensors(normalization, device)
        total = epochs * len(batches)

        augmentation = {"generator": epoch_generator(seed, 0)}

        def process(engine: Engine, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
            images = to_model_input(batch[0], mean, std, channels_last=False)  # (B, 3, H, W)
            if pretrainer.augment is not None:
                images = pretrainer.augment(images, augmentation["generator"])
            return pretrainer.step(images, (engine.state.iteration - 1) / total)

        def start_epoch(engine: Engine) -> None:
            # batch order and augmentation are functions of (seed, epoch): a resumed run draws the same
            batches.set_epoch(engine.state.epoch - 1)
            augmentation["generator"] = epoch_generator(seed, engine.state.epoch - 1)

        engine = Engine(process)
        engine.add_event_handler(Events.EPOCH_STARTED, start_epoch)
        history, compute = History(), ComputeCounter()
        engine.add_event_handler(Events.ITERATION_COMPLETED, compute.count_step)
        _attach_handlers(engine, pretrainer, history, round(warmup_epochs * len(batches)), total,
                         len(batches) * batch_size, progress, live)
        if checkpoint_dir is not None:
            run = {"epochs": epochs, "batch_size": batch_size, "warmup_epochs": warmup_epochs, "seed": seed,
                   "max_batches": max_batches, "normalization": normalization, "device": device.type,
                   "precision": pretrainer.precision}
            job = job_description({"method": settings or {}, "run": run},
                                  {key: train_set[key] for key in ("images", "labels")},
                                  pretrainer.job_weights(), code=CODE)
            checkpoint = TrainingCheckpoint(checkpoint_dir, {"engine": engine, "pretrainer": pretrainer,
                                                             "history": history, "compute": compute},
                                            None, job, checkpoint_every_s)
            # at the end of an epoch nothing random is under way; after the last one, COMPLETED saves
            engine.add_event_handler(Events.EPOCH_COMPLETED(event_filter=lambda _, epoch: epoch < epochs),
                                     lambda _: checkpoint.save_if_due())
            engine.add_event_handler(Events.COMPLETED, lambda _: checkpoint.save("max_epochs"))
            if checkpoint.restore():
                # killed after saving its last epoch but before marking itself finished: finished too
                if checkpoint.stop_reason is not None or engine.state.epoch >= epochs:
                    logger.info("%s: the run is over, returning its stored history", checkpoint.path)
                    if live is not None:
                        live.write(history.rows)
                    return history.rows, compute.summary(history.rows)
                logger.info("resuming from %s after epoch %d", checkpoint.path, engine.state.epoch)
        hooks = compute.attach(pretrainer)
        try:
            engine.run(batches, max_epochs=epochs)
        finally:
            for hook in hooks:
                hook.remove()
    return history.rows, compute.summary(history.rows)


def _attach_handlers(engine: Engine, pretrainer: Pretrainer, history: History, warmup: int, total: int,
                     images_per_epoch: int, progress: bool, live: LiveLog | None) -> None:
    base_lrs = [[group["lr"] for group in opt.param_groups] for opt in pretrainer.optimizers]
    losses = EpochLosses()
    clock = {"start": 0.0}

    @engine.on(Events.ITERATION_STARTED)
    def set_learning_rate(engine: Engine) -> None:
        factor = warmup_cosine(engine.state.iteration - 1, warmup, total)
        for opt, lrs in zip(pretrainer.optimizers, base_lrs):
            for group, lr in zip(opt.param_groups, lrs):
                group["lr"] = lr * factor

    @engine.on(Events.EPOCH_STARTED)
    def start_epoch(engine: Engine) -> None:
        pretrainer.train()  # once per epoch: the figure leaves the modules in eval mode, nothing else does
        losses.reset()
        clock["start"] = time.perf_counter()

    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.add(e.state.output))

    @engine.on(Events.EPOCH_COMPLETED)
    def summarise(engine: Engine) -> None:
        means = losses.means()
        if not all(math.isfinite(value) for value in means.values()):
            raise FloatingPointError(f"non-finite pretraining loss in epoch {engine.state.epoch}: {means}")
        seconds = time.perf_counter() - clock["start"]
        row = {"epoch": engine.state.epoch, **means, "seconds": seconds, "images_per_s": images_per_epoch / seconds}
        history.rows.append(row)
        logger.info("pretraining epoch %d: %s", engine.state.epoch,
                    ", ".join(f"{key} {value:.4g}" for key, value in row.items() if key != "epoch"))
        if live is not None:
            live.write(history.rows)

    if progress:
        ProgressBar(persist=False).attach(engine)
