"""The pretraining pipeline of the tiny profile (two pretraining seeds) through Kedro's SequentialRunner
on synthetic splits."""

import json

import numpy as np
import torch
from kedro.runner import SequentialRunner

from project_helpers import load_config, project_catalog
from dermascreen.models.vit import build_vit
from dermascreen.pipelines.pretraining import create_pipeline
from dermascreen.training.device import cpu_name

METHODS = ("vit", "mae", "umae", "semmae", "automae", "mlo_mae")


def _split(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 7).astype(np.int64)
    return {"images": rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8), "labels": labels,
            "binary": np.isin(labels, [0, 1, 4]).astype(np.int64)}


def test_only_the_report_node_reads_test_and_guided_methods_follow_the_mae_of_their_seed():
    params = load_config("base", "parameters")
    assert params["pretraining"]["shared"]["pretrain_seeds"] == [42, 43, 44]
    pipeline = create_pipeline(parameters=params)
    assert [n.name for n in pipeline.nodes if "test_set" in n.inputs] == ["pretraining_report"]
    for method in ("semmae", "automae"):
        for run, mae in ((method, "mae"), (f"{method}_seed43", "mae_seed43"), (f"{method}_seed44", "mae_seed44")):
            (pretrain,) = [n for n in pipeline.nodes if n.name == f"pretraining.{run}.pretrain"]
            assert f"pretraining.{mae}.encoder" in pretrain.inputs and f"params:pretraining.{method}.options" in pretrain.inputs
    runs = {*METHODS, *(f"{m}_seed{k}" for m in METHODS[1:] for k in (43, 44)), "cnn"}
    assert {n.removeprefix("pretraining.").removesuffix(".finetuned") for n in pipeline.all_outputs()
            if n.endswith(".finetuned")} == runs  # the ViT without pretraining: fine-tuning seeds only
    assert {n.name for n in pipeline.nodes if n.name.endswith(".probe")} == {
        f"pretraining.{run}.probe" for run in runs - {"cnn"} | {"vit_seed43", "vit_seed44"}}


def test_one_pretraining_seed_keeps_the_single_run_names():
    """quick pretrains once: its nodes and datasets are those it had before pretraining seeds existed."""
    params = load_config("quick", "parameters")
    assert params["pretraining"]["shared"]["pretrain_seeds"] == [42]
    pipeline = create_pipeline(parameters=params)
    assert len(pipeline.nodes) == 19 and not any("_seed" in n.name for n in pipeline.nodes)
    assert {n for n in pipeline.all_outputs() if n.endswith(".encoder")} == {f"pretraining.{m}.encoder"
                                                                           for m in METHODS[1:]}


def test_tiny_profile_runs_end_to_end(tmp_path):
    params = load_config("tiny", "parameters")
    params["pretraining"]["shared"]["state_dir"] = str(tmp_path / "data" / "06_models" / "pretraining_state")
    params["pretraining"]["shared"]["dvclive_dir"] = str(tmp_path / "dvclive" / "pretraining")
    catalog = project_catalog(tmp_path, env="tiny", parameters=params)
    for name, (n, seed) in {"train_set": (112, 0), "val_set": (35, 1), "test_set": (35, 2)}.items():
        catalog[name] = _split(n, seed)
    catalog["normalization"] = {"mean": [0.5, 0.5, 0.5], "std": [0.29, 0.29, 0.29]}
    catalog["data_provenance"] = {"path": "synthetic.npz", "md5": "0" * 32, "official": False}
    assert params["pretraining"]["shared"]["pretrain_seeds"] == [42, 43]
    SequentialRunner().run(create_pipeline(parameters=params), catalog)

    data = tmp_path / "data"
    report = (data / "08_reporting" / "pretraining_report.md").read_text()
    assert "kedro run --pipelines pretraining --env tiny" in report and "NOT the official file" in report
    assert all(label in report for label in ("ViT (no pretraining)", "MLO-MAE", "weighted_f1", "macro_f1"))
    cpu = f"cpu ({cpu_name()}), fp32"  # tiny asks for the CPU and fp32
    assert f"Hardware: (device (its model), precision) pretraining on {cpu}, fine-tuning on {cpu}." in report
    metrics = json.loads((data / "08_reporting" / "pretraining_metrics.json").read_text())
    assert set(metrics) == {*METHODS, "cnn"}
    assert 0.0 <= metrics["mae"]["accuracy_mean"] <= 1.0
    assert "CNN reference (supervised)" in report and "epoch 0 (untrained)" in report
    # one encoder per method and pretraining seed: seed 42's under the method's name, 43's under <method>_seed43
    assert "| runs (pretraining x fine-tuning seeds) | 1 | 2 x 1 | 2 x 1 | 2 x 1 | 2 x 1 | 2 x 1 | 1 |" in report
    state = data / "06_models" / "pretraining_state"
    for method in METHODS[1:]:
        weights = []
        for run, seed in ((method, 42), (f"{method}_seed43", 43)):
            assert (data / "08_reporting" / "pretraining" / run / "reconstructions.png").stat().st_size > 0
            encoder = data / "06_models" / "pretraining" / run / "encoder.pt"
            model = build_vit({"arch": "vit", "num_classes": 2, "weights": str(encoder)})  # what phase1 does
            assert model(torch.zeros(1, 3, 28, 28)).shape == (1, 2)
            checkpoint = torch.load(encoder, weights_only=True)
            compute = checkpoint["compute"]  # the report's "compute relative to MAE"
            assert compute["steps"] == 2 and compute["forward_passes_per_step"]["encoder"] >= 1
            assert checkpoint["method"] == method and checkpoint["pretrain"]["seed"] == seed
            weights.append(checkpoint["state_dict"]["patch_embed.weight"])
            assert (state / run).is_dir() and (state / "finetune" / run / "seed0").is_dir()  # resumable states
            curves = tmp_path / "dvclive" / "pretraining" / "plots" / "metrics"
            assert (curves / run).is_dir()
            assert (curves / "finetune" / run / "seed0" / "val_balanced_accuracy.tsv").is_file()  # each fine-tuning's
            assert len(torch.load(data / "06_models" / "pretraining" / run / "finetuned.pt", weights_only=False)) == 1
        assert not torch.equal(*weights)  # the seeds are different encoders
    live_summary = json.loads((tmp_path / "dvclive" / "pretraining" / "metrics.json").read_text())
    assert {"finetune/vit/seed0", "finetune/cnn/seed0", "finetune/mae/seed0"} <= set(live_summary)
    test_metrics = json.loads((data / "08_reporting" / "pretraining" / "test_metrics.json").read_text())
    assert len(test_metrics["per_seed"]["mlo_mae"][0]["per_class_recall"]) == 7
    assert [(r["pretrain_seed"], r["seed"]) for r in test_metrics["per_seed"]["mae"]] == [(42, 0), (43, 0)]
    assert [(r["pretrain_seed"], r["seed"]) for r in test_metrics["per_seed"]["vit"]] == [(None, 0)]
    summary = test_metrics["summaries"]["semmae"]
    assert summary["pretrain_seeds"] == [42, 43] and len(summary["accuracy"]["values"]) == 2
    assert set(test_metrics["differences_vs_vit"]) == {*METHODS[1:], "cnn"}
    assert set(test_metrics["probes"]) == set(METHODS)  # vit: the untrained encoders the methods start from
    for interval in test_metrics["differences_vs_vit"]["mae"].values():
        assert interval["low"] <= interval["estimate"] <= interval["high"]
    for method, probe in test_metrics["probes"].items():
        assert probe["pretrain_seeds"] == [42, 43]
        per_seed = [json.loads((data / "08_reporting" / "pretraining" / run / "probe.json").read_text())
                    for run in (method, f"{method}_seed43")]
        assert set(probe) == {"pretrain_seeds", *per_seed[0]} == {"pretrain_seeds", "knn_accuracy", "knn_balanced_accuracy",
                                                                  "linear_accuracy", "linear_balanced_accuracy"}
        for key in per_seed[0]:  # mean over the pretraining seeds' probes
            assert probe[key]["values"] == [scores[key] for scores in per_seed]
            assert 0.0 <= probe[key]["mean"] <= 1.0
