"""Nodes of the pretraining pipeline: pure functions of data and parameters (docs/pretraining.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch
from matplotlib.figure import Figure

from dermascreen.models.vit import encoder_checkpoint, encoder_from_checkpoint
from dermascreen.pretraining.engine import run_pretraining
from dermascreen.pretraining.figures import reconstruction_figure
from dermascreen.pretraining.finetune import evaluate_runs, finetune_runs
from dermascreen.pretraining.methods import build_autoencoder, build_pretrainer
from dermascreen.pretraining.report import metrics_for_dvc, render_report, summarise
from dermascreen.training.device import describe_hardware, hardware, resolve_device, resolve_precision
from dermascreen.training.engines import LiveLog
from dermascreen.training.fit import show_progress

RANDOM_MASKING = ("mae", "umae")
# pretrain keys that change how a run is shown or saved, not what it computes: a resume may change them
RUNTIME_KEYS = ("progress", "checkpoint_every_s")


def _pretrain(method: str, train_set: dict, val_set: dict, normalization: dict, shared: dict[str, Any],
              options: dict[str, Any], source: dict[str, Any] | None) -> tuple[dict, pd.DataFrame, Figure]:
    device = resolve_device(shared["device"])
    pretrain = {**shared["pretrain"], "seed": shared["seed"],
                "precision": resolve_precision(device, shared["pretrain"]["precision"])}
    torch.manual_seed(shared["seed"])
    mae = build_autoencoder(shared["encoder"], shared["decoder"], pretrain["mask_ratio"],
                            pretrain["norm_pix_loss"]).to(device)
    source_encoder = None if source is None else encoder_from_checkpoint(source, "source encoder").to(device)
    trainer = build_pretrainer(method, mae, pretrain, options, train_set, normalization, source_encoder)
    # The state of each method's run (kept by DVC between runs, see dvc.yaml): a killed run resumes.
    settings = {"method": method, "options": options, "encoder": shared["encoder"], "decoder": shared["decoder"],
                "pretrain": {key: value for key, value in pretrain.items() if key not in RUNTIME_KEYS}}
    history = run_pretraining(trainer, train_set, normalization, epochs=pretrain["epochs"],
                              batch_size=pretrain["batch_size"], warmup_epochs=pretrain["warmup_epochs"],
                              seed=shared["seed"], max_batches=pretrain["max_batches"],
                              progress=show_progress(pretrain["progress"]),
                              checkpoint_dir=Path(shared["state_dir"]) / method,
                              checkpoint_every_s=pretrain["checkpoint_every_s"], settings=settings,
                              live=LiveLog(shared["dvclive_dir"], method))
    figure = reconstruction_figure(trainer, val_set["images"][: shared["figure_images"]], normalization, method,
                                   learned=method not in RANDOM_MASKING, seed=shared["seed"])
    checkpoint = encoder_checkpoint(mae.encoder, shared["encoder"], method=method, normalization=normalization,
                                    pretrain=pretrain, options=options, history=history,
                                    hardware=hardware(device, pretrain["precision"]))
    return checkpoint, pd.DataFrame(history), figure


def pretrain_encoder(train_set: dict, val_set: dict, normalization: dict, method: str, shared: dict[str, Any],
                     options: dict[str, Any]) -> tuple[dict, pd.DataFrame, Figure]:
    """Pretrain with ``method`` (MAE, U-MAE, MLO-MAE): encoder checkpoint, history, reconstruction figure.

    ``val_set`` only supplies the few images of the figure.
    """
    return _pretrain(method, train_set, val_set, normalization, shared, options, None)


def pretrain_guided_encoder(train_set: dict, val_set: dict, normalization: dict, source_encoder: dict,
                            method: str, shared: dict[str, Any],
                            options: dict[str, Any]) -> tuple[dict, pd.DataFrame, Figure]:
    """SemMAE / AutoMAE, whose masks come from ``source_encoder`` (the MAE run's encoder)."""
    return _pretrain(method, train_set, val_set, normalization, shared, options, source_encoder)


def finetune_encoder(encoder: dict, train_set: dict, val_set: dict, normalization: dict, method: str,
                     shared: dict[str, Any], finetune: dict[str, Any]) -> tuple[list[dict], dict]:
    """Fine-tune ``encoder`` end to end once per seed; runs and their validation summary."""
    return _finetune(encoder, train_set, val_set, normalization, method, shared, finetune)


def finetune_from_scratch(train_set: dict, val_set: dict, normalization: dict, shared: dict[str, Any],
                          finetune: dict[str, Any]) -> tuple[list[dict], dict]:
    """The same ViT, recipe and budget without pretraining."""
    return _finetune(None, train_set, val_set, normalization, "vit", shared, finetune)


def _finetune(encoder: dict | None, train_set: dict, val_set: dict, normalization: dict, method: str,
              shared: dict[str, Any], finetune: dict[str, Any]) -> tuple[list[dict], dict]:
    runs = finetune_runs(encoder, shared["encoder"], train_set, val_set, normalization, finetune["training"],
                         finetune["seeds"], finetune["dropout"], method)
    validation = {"method": method, "runs": [{"seed": r["seed"], "best_epoch": r["best_epoch"],
                                              **r["val_metrics"]} for r in runs]}
    return runs, validation


def pretraining_report(test_set: dict, normalization: dict, data_provenance: dict, profile: str,
                       shared: dict[str, Any], finetune: dict[str, Any],
                       **finetuned: list[dict]) -> tuple[str, dict, dict]:
    """The one node that reads the test split: every fine-tuned run evaluated once, then the
    report (markdown), ``dvc metrics`` JSON and the full per-seed test metrics."""
    per_seed = {method: evaluate_runs(runs, test_set, normalization, shared["device"])
                for method, runs in finetuned.items()}
    summaries = {method: summarise(results) for method, results in per_seed.items()}
    report = render_report(summaries, data_provenance, _run_info(profile, shared, finetune, finetuned))
    return report, metrics_for_dvc(summaries), {"summaries": summaries, "per_seed": per_seed}


def _used_hardware(finetuned: dict[str, list[dict]], key: str) -> str:
    used = {describe_hardware(run[key]) for runs in finetuned.values() for run in runs if run.get(key)}
    return "; ".join(sorted(used)) or "not recorded"


def _run_info(profile: str, shared: dict[str, Any], finetune: dict[str, Any],
              finetuned: dict[str, list[dict]]) -> dict[str, Any]:
    pretrain, encoder = shared["pretrain"], shared["encoder"]
    training = finetune["training"]
    return {
        "command": f"kedro run --pipelines pretraining --env {profile}",
        "profile": profile,
        "seeds": finetune["seeds"],
        "pretraining": f"{pretrain['epochs']} epochs, batch {pretrain['batch_size']}, mask ratio "
                       f"{pretrain['mask_ratio']}, ViT {encoder}",
        "finetune": f"{training['epochs']} epochs max (patience {training['patience']}, monitor "
                    f"{training['monitor']}), batch {training['batch_size']}, Adam lr {training['lr']}, "
                    f"augment {training.get('augment')}",
        "hardware": f"pretraining on {_used_hardware(finetuned, 'pretraining_hardware')}, fine-tuning on "
                    f"{_used_hardware(finetuned, 'hardware')} (device (device model), precision)",
    }
