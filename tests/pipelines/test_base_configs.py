"""Every `base` configuration builds and takes one optimizer step on the CPU (issue 11).

The real `conf/base` parameters (OmegaConfigLoader), the real node functions of the phase1 grid,
the phase2 grid and the pretraining pipeline, run on a few synthetic images of the `base` image
size, with batches of 2, one step per run and random weights (`weights: imagenet` becomes `none`:
the same architecture without a download). A `base` configuration that cannot build, load its
init checkpoint or train fails here, not on a GPU an hour in.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from project_helpers import load_config
from dermascreen.data.labels import to_binary
from dermascreen.inference import cli
from dermascreen.models import build_model
from dermascreen.pipelines.data_engineering.nodes import compute_class_weights
from dermascreen.pipelines.phase1.pipeline import build_grid as phase1_grid
from dermascreen.pipelines.phase2.pipeline import build_grid as phase2_grid
from dermascreen.pipelines.pretraining import create_pipeline as pretraining_pipeline

pytestmark = pytest.mark.slow  # about 2 min of CPU time (one thread), far over a fast test's 60 s

ONE_STEP = {"epochs": 1, "max_train_batches": 1, "device": "cpu", "precision": "fp32", "progress": False,
            "min_specificity": 0.0}


def split(n: int, size: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 7).astype(np.int64)
    return {"images": rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), "labels": labels,
            "binary": to_binary(labels)}


def one_step_parameters() -> dict[str, Any]:
    """`base` parameters sized down to one step of batch 2; architectures and methods unchanged."""
    params = copy.deepcopy(load_config("base", "parameters"))
    for phase in ("phase1", "phase2"):
        params[phase]["training"] = {**params[phase]["training"], **ONE_STEP}
    for spec in params["phase1"]["architectures"].values():
        spec["batch_size"] = 2
        if spec["model"].get("weights") == "imagenet":
            spec["model"]["weights"] = "none"  # same architecture, no hub (tests run offline)
    pretraining = params["pretraining"]
    # one pretraining seed: the others run the same code (tests/pretraining runs two)
    pretraining["shared"] = {**pretraining["shared"], "device": "cpu", "figure_images": 2, "pretrain_seeds": [42]}
    pretraining["shared"]["pretrain"] = {**pretraining["shared"]["pretrain"], "epochs": 1, "batch_size": 2,
                                         "warmup_epochs": 0, "max_batches": 2}  # MLO-MAE's upper levels: step 2
    pretraining["mlo_mae"]["options"]["batch_size"] = 2
    finetune = pretraining["finetune"]
    pretraining["finetune"] = {**finetune, "seeds": [0],
                               "training": {**finetune["training"], **ONE_STEP, "batch_size": 2, "warmup_epochs": 0},
                               "cnn": {**finetune["cnn"],
                                       "training": {**finetune["cnn"]["training"], **ONE_STEP, "batch_size": 2}}}
    return params


def resolve(name: str, values: dict[str, Any], params: dict[str, Any]) -> Any:
    if not name.startswith("params:"):
        return values[name]
    value = params
    for key in name.removeprefix("params:").split("."):
        value = value[key]
    return value


def run_nodes(nodes, values: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Kedro's node.run on each node in order, outputs kept in ``values``."""
    for node in nodes:
        values.update(node.run({name: resolve(name, values, params) for name in node.inputs}))
    return values


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """Parameters, data of the `base` image size and the class weights the data pipeline computes."""
    params = one_step_parameters()
    for phase in ("phase1", "phase2"):
        params[phase]["state_dir"] = str(tmp_path_factory.mktemp(phase))
        params[phase]["dvclive_dir"] = str(tmp_path_factory.mktemp(f"dvclive_{phase}"))
    params["pretraining"]["shared"]["state_dir"] = str(tmp_path_factory.mktemp("pretraining"))
    params["pretraining"]["shared"]["dvclive_dir"] = str(tmp_path_factory.mktemp("dvclive_pretraining"))
    size = load_config("base", "globals")["image_size"]
    train = split(14, size, 0)
    values = {"train_set": train, "val_set": split(7, size, 1), "test_set": split(7, size, 2),
              "normalization": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
              "data_provenance": {"path": "synthetic.npz", "md5": "0" * 32, "official": False},
              "class_weights": compute_class_weights(train, params["data_engineering"])}
    return params, values


@pytest.fixture(scope="module")
def pretrained(base):
    """The whole `base` pretraining pipeline: every method pretrains and fine-tunes, then the report."""
    params, values = base
    return run_nodes(pretraining_pipeline(parameters=params).nodes, dict(values), params)


def test_pretraining_runs_every_base_method(pretrained, base):
    params, _ = base
    methods = ("mae", "umae", "semmae", "automae", "mlo_mae")
    assert {m: params["pretraining"][m]["method"] for m in methods} == {m: m for m in methods}
    encoder = params["pretraining"]["shared"]["encoder"]
    for method in methods:
        assert pretrained[f"pretraining.{method}.encoder"]["config"] == encoder
        assert len(pretrained[f"pretraining.{method}.history"]) == 1
    for method in ("vit", *methods):
        (run,) = pretrained[f"pretraining.{method}.finetuned"]
        assert len(run["history"]) == 1
        build_model(run["config"]).load_state_dict(run["state_dict"])
    assert set(pretrained["pretraining_metrics"]) >= {"mae", "vit"}


def requires_grad(model_config: dict) -> dict[str, bool]:
    """Every parameter ``build_model`` creates and whether it trains, from a model on the meta
    device (no memory, no init); the ViT, whose drop-path schedule reads values, is built for real."""
    config = {**model_config, "weights": "none"}
    with torch.device("cpu" if config["arch"] == "vit" else "meta"):
        return {name: p.requires_grad for name, p in build_model(config).named_parameters()}


def assert_rebuilds(checkpoint: dict) -> None:
    """The checkpoint's config builds the model its weights fit (what phase3 and inference do)."""
    config = checkpoint["config"]
    with torch.device("cpu" if config["arch"] == "vit" else "meta"):
        build_model(config).load_state_dict(checkpoint["state_dict"], assign=True)


def assert_one_step_moved_only_the_trainable(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor],
                                             requires_grad: dict[str, bool]) -> None:
    """Frozen parameters did not move; the head and, when part of it trains, the backbone did.

    Not every trainable tensor moves: timm zero-initialises each residual block's last BatchNorm
    scale, so with random weights the rest of the block gets no gradient in the first step.
    """
    trainable = {name for name, trains in requires_grad.items() if trains}
    changed = {name for name in requires_grad if not torch.equal(before[name], after[name])}
    head = {name for name in trainable if name.startswith("head.")}
    assert head and head <= changed <= trainable, sorted(changed - trainable)[:5]
    assert bool(changed - head) == bool(trainable - head)


@pytest.fixture(scope="module")
def phase1(base, pretrained):
    """One grid run per `base` architecture (the ViTs on the pretrained encoders), class weights
    cycled over the configured ones: {architecture: outputs of its run}."""
    params, values = base
    phase1 = params["phase1"]
    architectures = list(phase1["architectures"])  # every one defined, also those not in `runs`
    grid = phase1_grid(architectures, phase1["class_weights"], phase1["architectures"])
    chosen = {f"phase1.{arch}_{phase1['class_weights'][i % len(phase1['class_weights'])]}.train": arch
              for i, arch in enumerate(architectures)}
    nodes = [node for node in grid.nodes if node.name in chosen]
    assert len(nodes) == len(architectures)
    results = {}
    for node in nodes:
        outputs = run_nodes([node], {**values, **pretrained}, params)
        run = node.name.removesuffix(".train")
        results[chosen[node.name]] = {"checkpoint": outputs[f"{run}.checkpoint"], "summary": outputs[f"{run}.summary"]}
    return results


def test_every_phase1_run_resolves_its_inputs(base):
    params, values = base
    phase1 = params["phase1"]
    grid = phase1_grid(phase1["runs"], phase1["class_weights"], phase1["architectures"])
    train_nodes = [node for node in grid.nodes if node.name.endswith(".train")]
    assert len(train_nodes) == len(phase1["runs"]) * len(phase1["class_weights"])
    for node in train_nodes:
        for name in node.inputs:
            if not name.startswith("pretraining."):
                resolve(name, values, params)
    assert set(phase1["class_weights"]) <= set(values["class_weights"])


def test_every_base_architecture_trains_one_step(phase1, base):
    _, values = base
    size = values["train_set"]["images"].shape[1]
    for arch, result in phase1.items():
        summary, checkpoint = result["summary"], result["checkpoint"]
        assert summary["epochs_run"] == 1 and summary["model"]["image_size"] == size, arch
        assert checkpoint["config"] == {**summary["model"], "weights": "none"}
        assert_rebuilds(checkpoint)


@pytest.mark.parametrize("winner", ["CNN_v1", "CNN_v2", "ResNet_v2", "VGG_v2", "EffNet_v2", "ViT_MAE"])
def test_every_phase2_strategy_trains_one_step_from_the_winner(winner, phase1, base):
    params, values = base
    seed = params["phase2"]["seeds"][0]  # the other seeds run the same code
    grid = phase2_grid(params["phase2"]["runs"], [seed])
    nodes = [node for node in grid.nodes if node.name.endswith(".train")]
    assert len(nodes) == len(params["phase2"]["runs"])
    best = {"phase1_best": phase1[winner]["summary"], "phase1_best_model": phase1[winner]["checkpoint"]}
    for node in nodes:
        strategy = node.name.split(".")[1].removesuffix(f"_seed{seed}")
        outputs = run_nodes([node], {**values, **best}, params)
        summary = outputs[f"phase2.{strategy}_seed{seed}.summary"]
        checkpoint = outputs[f"phase2.{strategy}_seed{seed}.checkpoint"]
        assert summary["training"]["seed"] == checkpoint["training"]["seed"] == seed
        assert summary["epochs_run"] == 1
        assert summary["init_weights"] == f"checkpoint of run {best['phase1_best']['run']}"
        assert summary["model"]["unfreeze"] == params["phase2"]["strategies"][strategy]["model"]["unfreeze"]
        assert_one_step_moved_only_the_trainable(best["phase1_best_model"]["state_dict"], checkpoint["state_dict"],
                                                 requires_grad(summary["model"]))
        assert_rebuilds(checkpoint)


@pytest.mark.parametrize("size", [64, 128, 224])
def test_larger_images_run_the_grids_pretraining_and_inference(size, base, tmp_path):
    """The other MedMNIST sizes end to end: grid runs (the model's image_size follows the data),
    a phase2 strategy, MAE pretraining and fine-tuning, and the inference CLI on the result."""
    params, values = base
    params = {**params, "phase1": {**params["phase1"], "state_dir": str(tmp_path / "phase1")},
              "phase2": {**params["phase2"], "state_dir": str(tmp_path / "phase2")}}
    values = {**values, "train_set": split(14, size, 0), "val_set": split(7, size, 1)}
    phase1 = params["phase1"]
    grid = phase1_grid(["CNN_v1", "EffNet_v2"], ["W5"], phase1["architectures"])
    run_nodes([node for node in grid.nodes if node.name.endswith(".train")], values, params)
    best = values["phase1.EffNet_v2_W5.summary"]
    assert best["model"]["image_size"] == values["phase1.CNN_v1_W5.summary"]["model"]["image_size"] == size
    (freeze20,) = [node for node in phase2_grid(["Freeze20"], [0]).nodes if node.name.endswith(".train")]
    values.update(phase1_best=best, phase1_best_model=values["phase1.EffNet_v2_W5.checkpoint"])
    run_nodes([freeze20], values, params)
    mae = [node for node in pretraining_pipeline(parameters=params).nodes if node.name.startswith("pretraining.mae.")]
    run_nodes(mae, values, params)
    assert len(values["pretraining.mae.finetuned"][0]["history"]) == 1

    checkpoint = values["phase2.Freeze20_seed0.checkpoint"]
    assert checkpoint["config"]["image_size"] == size
    torch.save(checkpoint, tmp_path / "best.pt")
    for name, side in (("small.png", 40), ("large.png", 300)):
        Image.fromarray(np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(
            tmp_path / name)
    output = tmp_path / "predictions.csv"
    assert cli.main([str(tmp_path / "small.png"), str(tmp_path / "large.png"), "--model", str(tmp_path / "best.pt"),
                     "--threshold", "0.5", "-o", str(output)]) == 0
    assert (pd.read_csv(output)["status"] == "ok").all()
