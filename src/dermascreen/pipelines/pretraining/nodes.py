"""Nodes of the pretraining pipeline: pure functions of data and parameters (docs/pretraining.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from dermascreen.models.vit import encoder_checkpoint, encoder_from_checkpoint
from dermascreen.pretraining.engine import run_pretraining
from dermascreen.pretraining.figures import reconstruction_figure
from dermascreen.evaluation.bootstrap import paired_difference_intervals
from dermascreen.pretraining.finetune import (ModelBuilder, balanced_class_weights, evaluate_runs, finetune_runs, run_probabilities,
                                              supervised_classifier, vit_classifier)
from dermascreen.pretraining.mae import MaskedAutoencoder
from dermascreen.pretraining.methods import build_autoencoder, build_pretrainer
from dermascreen.pretraining.probe import probe_scores
from dermascreen.pretraining.report import metrics_for_dvc, render_report, summarise, summarise_probes
from dermascreen.training.device import describe_hardware, hardware, resolve_device, resolve_precision
from dermascreen.training.engines import LiveLog
from dermascreen.training.fit import show_progress

RANDOM_MASKING = ("mae", "umae")
# pretrain keys that change how a run is shown or saved, not what it computes: a resume may change them
RUNTIME_KEYS = ("progress", "checkpoint_every_s")


def initial_autoencoder(shared: dict[str, Any], seed: int, mask_ratio: float, norm_pix_loss: bool,
                        device: torch.device) -> MaskedAutoencoder:
    """The autoencoder every method of pretraining seed ``seed`` starts from: its encoder is their epoch 0."""
    torch.manual_seed(seed)
    return build_autoencoder(shared["encoder"], shared["decoder"], mask_ratio, norm_pix_loss).to(device)


def _pretrain(method: str, run: str, seed: int, train_set: dict, val_set: dict, normalization: dict,
              shared: dict[str, Any], options: dict[str, Any],
              source: dict[str, Any] | None) -> tuple[dict, pd.DataFrame, Figure]:
    device = resolve_device(shared["device"])
    pretrain = {**shared["pretrain"], "seed": seed,
                "precision": resolve_precision(device, shared["pretrain"]["precision"])}
    mae = initial_autoencoder(shared, seed, pretrain["mask_ratio"], pretrain["norm_pix_loss"], device)
    source_encoder = None if source is None else encoder_from_checkpoint(source, "source encoder").to(device)
    trainer = build_pretrainer(method, mae, pretrain, options, train_set, normalization, source_encoder)
    # The state of each run (kept by DVC between runs, see dvc.yaml): a killed run resumes.
    settings = {"method": method, "options": options, "encoder": shared["encoder"], "decoder": shared["decoder"],
                "pretrain": {key: value for key, value in pretrain.items() if key not in RUNTIME_KEYS}}
    history, compute = run_pretraining(trainer, train_set, normalization, epochs=pretrain["epochs"],
                                       batch_size=pretrain["batch_size"], warmup_epochs=pretrain["warmup_epochs"],
                                       seed=seed, max_batches=pretrain["max_batches"],
                                       progress=show_progress(pretrain["progress"]),
                                       checkpoint_dir=Path(shared["state_dir"]) / run,
                                       checkpoint_every_s=pretrain["checkpoint_every_s"], settings=settings,
                                       live=LiveLog(shared["dvclive_dir"], run))
    figure = reconstruction_figure(trainer, val_set["images"][: shared["figure_images"]], normalization, method,
                                   learned=method not in RANDOM_MASKING, seed=seed)
    checkpoint = encoder_checkpoint(mae.encoder, shared["encoder"], method=method, normalization=normalization,
                                    pretrain=pretrain, options=options, history=history, compute=compute,
                                    hardware=hardware(device, pretrain["precision"]))
    return checkpoint, pd.DataFrame(history), figure


def pretrain_encoder(train_set: dict, val_set: dict, normalization: dict, method: str, shared: dict[str, Any],
                     options: dict[str, Any], *, run: str, seed: int) -> tuple[dict, pd.DataFrame, Figure]:
    """Pretrain with ``method`` (MAE, U-MAE, MLO-MAE) from pretraining seed ``seed``: encoder checkpoint,
    history, reconstruction figure. ``run`` names the resumable state and the DVCLive curves.

    ``val_set`` only supplies the few images of the figure.
    """
    return _pretrain(method, run, seed, train_set, val_set, normalization, shared, options, None)


def pretrain_guided_encoder(train_set: dict, val_set: dict, normalization: dict, source_encoder: dict,
                            method: str, shared: dict[str, Any], options: dict[str, Any], *, run: str,
                            seed: int) -> tuple[dict, pd.DataFrame, Figure]:
    """SemMAE / AutoMAE, whose masks come from ``source_encoder`` (the MAE encoder of the same seed)."""
    return _pretrain(method, run, seed, train_set, val_set, normalization, shared, options, source_encoder)


def finetune_encoder(encoder: dict, train_set: dict, val_set: dict, normalization: dict, method: str,
                     shared: dict[str, Any], finetune: dict[str, Any], *, run: str) -> tuple[list[dict], dict]:
    """Fine-tune ``encoder`` end to end once per fine-tuning seed; runs and their validation summary.
    ``run`` (the encoder's) names the resumable states."""
    build = vit_classifier(encoder, shared["encoder"], finetune["head"])
    return _finetune(build, train_set, val_set, normalization, method, run, shared, finetune["seeds"],
                     finetune["training"], finetune["class_weight_power"], encoder.get("hardware"))


def finetune_from_scratch(train_set: dict, val_set: dict, normalization: dict, shared: dict[str, Any],
                          finetune: dict[str, Any]) -> tuple[list[dict], dict]:
    """The same ViT, recipe and budget without pretraining."""
    build = vit_classifier(None, shared["encoder"], finetune["head"])
    return _finetune(build, train_set, val_set, normalization, "vit", "vit", shared, finetune["seeds"],
                     finetune["training"], finetune["class_weight_power"])


def train_supervised_reference(train_set: dict, val_set: dict, normalization: dict, shared: dict[str, Any],
                               finetune: dict[str, Any]) -> tuple[list[dict], dict]:
    """The supervised CNN reference: ``finetune.cnn``'s model, recipe and class weights, the same seeds and engine."""
    cnn = finetune["cnn"]
    return _finetune(supervised_classifier(cnn["model"]), train_set, val_set, normalization, "cnn", "cnn", shared,
                     finetune["seeds"], cnn["training"], cnn["class_weight_power"])


def _finetune(build: ModelBuilder, train_set: dict, val_set: dict, normalization: dict, method: str, run: str,
              shared: dict[str, Any], seeds: list[int], training: dict[str, Any], class_weight_power: float,
              pretraining_hardware: dict | None = None) -> tuple[list[dict], dict]:
    state_dir = Path(shared["state_dir"]) / "finetune" / run
    class_weights = balanced_class_weights(train_set["labels"], class_weight_power)
    runs = finetune_runs(build, train_set, val_set, normalization, training, seeds, method,
                         pretraining_hardware, state_dir, class_weights,
                         live_dir=shared["dvclive_dir"], live_run=f"finetune/{run}")
    validation = {"method": method, "runs": [{"seed": r["seed"], "best_epoch": r["best_epoch"],
                                              **r["val_metrics"]} for r in runs]}
    return runs, validation


def probe_encoder(encoder: dict, train_set: dict, val_set: dict, normalization: dict,
                  shared: dict[str, Any], *, seed: int) -> dict[str, float]:
    """k-NN and linear-probe scores of the frozen pretrained encoder (of pretraining seed ``seed``) on validation."""
    device = resolve_device(shared["device"])
    return probe_scores(encoder_from_checkpoint(encoder, "pretrained encoder").to(device), train_set, val_set,
                        normalization, seed)


def probe_initial_encoder(train_set: dict, val_set: dict, normalization: dict,
                          shared: dict[str, Any], *, seed: int) -> dict[str, float]:
    """The same probes of the epoch-0 encoder of pretraining seed ``seed`` (the seeded initialisation
    its methods start from, untrained)."""
    pretrain = shared["pretrain"]
    mae = initial_autoencoder(shared, seed, pretrain["mask_ratio"], pretrain["norm_pix_loss"],
                              resolve_device(shared["device"]))
    return probe_scores(mae.encoder, train_set, val_set, normalization, seed)


def pretraining_report(test_set: dict, normalization: dict, data_provenance: dict, profile: str,
                       shared: dict[str, Any], finetune: dict[str, Any], *, members: dict[str, dict[int, str]],
                       **artifacts: Any) -> tuple[str, dict, dict]:
    """The one node that reads the test split: every fine-tuned run evaluated once, then the
    report (markdown), ``dvc metrics`` JSON and the full per-run test metrics.

    ``members[method]``: ``{pretraining seed: run}`` of every pretraining method and of ``vit`` (the
    untrained encoders). ``artifacts``: ``finetuned_<run>`` (fine-tuned runs) of every method's run, of
    ``vit`` and ``cnn``; ``probe_<run>`` (probe scores) of every run of ``members``; ``encoder_<run>``
    (pretrained checkpoints) of every pretraining method's run.
    """
    pretrained = {method: runs for method, runs in members.items() if method != "vit"}
    finetuned = {"vit": artifacts["finetuned_vit"],
                 **{method: [{**run, "pretrain_seed": seed} for seed, name in runs.items()
                             for run in artifacts[f"finetuned_{name}"]] for method, runs in pretrained.items()},
                 "cnn": artifacts["finetuned_cnn"]}
    labels = np.asarray(test_set["labels"])
    probabilities = {method: run_probabilities(runs, test_set, normalization, shared["device"])
                     for method, runs in finetuned.items()}
    per_seed = {method: evaluate_runs(finetuned[method], probabilities[method], labels) for method in finetuned}
    summaries = {method: summarise(results) for method, results in per_seed.items()}
    predicted = {method: np.stack([p.argmax(axis=1) for p in probas]) for method, probas in probabilities.items()}
    # Pooled: every run of the method (all its pretraining x fine-tuning seeds) against every run of
    # the ViT, so the estimate is the difference of the table's means (docs/pretraining.md).
    differences = {method: paired_difference_intervals(labels, predicted[method], predicted["vit"])
                   for method in finetuned if method != "vit"}
    probes = {method: summarise_probes({seed: artifacts[f"probe_{name}"] for seed, name in runs.items()})
              for method, runs in members.items()}
    compute = {method: _compute(runs, [artifacts[f"encoder_{name}"] for name in pretrained.get(method, {}).values()])
               for method, runs in finetuned.items()}
    report = render_report(summaries, data_provenance, _run_info(profile, shared, finetune, finetuned),
                           differences, probes, compute)
    return report, metrics_for_dvc(summaries), {"summaries": summaries, "per_seed": per_seed,
                                                "differences_vs_vit": differences, "probes": probes,
                                                "compute": compute}


def _compute(runs: list[dict], encoders: list[dict]) -> dict[str, float | None]:
    """Seconds spent pretraining (every pretraining seed; None without pretraining) and fine-tuning (all
    runs), and the encoder tokens of a pretraining step (every ViT encoder the method runs, frozen ones
    included; the same for every seed)."""
    finetuning = sum(row["train_time_s"] + row["val_time_s"] for run in runs for row in run["history"])
    if not encoders:
        return {"pretraining_s": None, "encoder_tokens_per_step": None, "finetuning_s": finetuning}
    return {"pretraining_s": sum(encoder["compute"]["seconds"] for encoder in encoders),
            "encoder_tokens_per_step": encoders[0]["compute"]["encoder_tokens_per_step"], "finetuning_s": finetuning}


def _recipe(training: dict[str, Any]) -> str:
    keys = ("optimizer", "lr", "weight_decay", "layer_decay", "lr_schedule", "warmup_epochs", "label_smoothing")
    return ", ".join(f"{key} {training[key]}" for key in keys if key in training)


def _used_hardware(finetuned: dict[str, list[dict]], key: str) -> str:
    used = {describe_hardware(run[key]) for runs in finetuned.values() for run in runs if run.get(key)}
    return "; ".join(sorted(used)) or "not recorded"


def _run_info(profile: str, shared: dict[str, Any], finetune: dict[str, Any],
              finetuned: dict[str, list[dict]]) -> dict[str, Any]:
    pretrain, encoder = shared["pretrain"], shared["encoder"]
    training, cnn = finetune["training"], finetune["cnn"]
    return {
        "command": f"kedro run --pipelines pretraining --env {profile}",
        "profile": profile,
        "seeds": finetune["seeds"],
        "pretrain_seeds": shared["pretrain_seeds"],
        "pretraining": f"{pretrain['epochs']} epochs, batch {pretrain['batch_size']}, mask ratio "
                       f"{pretrain['mask_ratio']}, ViT {encoder}",
        "finetune": f"{training['epochs']} epochs max (patience {training['patience']}, monitor "
                    f"{training['monitor']}), batch {training['batch_size']}, {_recipe(training)}, head "
                    f"{finetune['head']}, augment {training.get('augment')}",
        "class_weights": f"class weights (N / (7 n_c)) ** {finetune['class_weight_power']}",
        "cnn": f"{cnn['model']}, {cnn['training']['epochs']} epochs, {_recipe(cnn['training'])}, class weights "
               f"(N / (7 n_c)) ** {cnn['class_weight_power']}",
        "hardware": f"(device (its model), precision) pretraining on "
                    f"{_used_hardware(finetuned, 'pretraining_hardware')}, fine-tuning on "
                    f"{_used_hardware(finetuned, 'hardware')}",
    }
