"""The pretraining pipeline of the tiny profile through Kedro's SequentialRunner on synthetic splits."""

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


def test_only_the_report_node_reads_test_and_guided_methods_follow_mae():
    pipeline = create_pipeline()
    assert [n.name for n in pipeline.nodes if "test_set" in n.inputs] == ["pretraining_report"]
    for method in ("semmae", "automae"):
        (pretrain,) = [n for n in pipeline.nodes if n.name == f"pretraining.{method}.pretrain"]
        assert "pretraining.mae.encoder" in pretrain.inputs
    assert {f"pretraining.{m}.finetuned" for m in METHODS} <= set(pipeline.inputs()) | set(pipeline.all_outputs())


def test_tiny_profile_runs_end_to_end(tmp_path):
    params = load_config("tiny", "parameters")
    params["pretraining"]["shared"]["state_dir"] = str(tmp_path / "data" / "06_models" / "pretraining_state")
    params["pretraining"]["shared"]["dvclive_dir"] = str(tmp_path / "dvclive" / "pretraining")
    catalog = project_catalog(tmp_path, env="tiny", parameters=params)
    for name, (n, seed) in {"train_set": (112, 0), "val_set": (35, 1), "test_set": (35, 2)}.items():
        catalog[name] = _split(n, seed)
    catalog["normalization"] = {"mean": [0.5, 0.5, 0.5], "std": [0.29, 0.29, 0.29]}
    catalog["data_provenance"] = {"path": "synthetic.npz", "md5": "0" * 32, "official": False}
    SequentialRunner().run(create_pipeline(), catalog)

    data = tmp_path / "data"
    report = (data / "08_reporting" / "pretraining_report.md").read_text()
    assert "kedro run --pipelines pretraining --env tiny" in report and "NOT the official file" in report
    assert all(label in report for label in ("ViT (no pretraining)", "MLO-MAE", "weighted_f1", "macro_f1"))
    cpu = f"cpu ({cpu_name()}), fp32"  # tiny asks for the CPU and fp32
    assert f"Hardware: pretraining on {cpu}, fine-tuning on {cpu} (device (device model), precision)." in report
    metrics = json.loads((data / "08_reporting" / "pretraining_metrics.json").read_text())
    assert set(metrics) == {*METHODS, "cnn"}
    assert 0.0 <= metrics["mae"]["accuracy_mean"] <= 1.0
    assert "CNN reference (supervised)" in report and "epoch 0 (untrained)" in report
    for method in METHODS[1:]:
        assert (data / "08_reporting" / "pretraining" / method / "reconstructions.png").stat().st_size > 0
        encoder = data / "06_models" / "pretraining" / method / "encoder.pt"
        model = build_vit({"arch": "vit", "num_classes": 2, "weights": str(encoder)})  # what phase1 does
        assert model(torch.zeros(1, 3, 28, 28)).shape == (1, 2)
        compute = torch.load(encoder, weights_only=True)["compute"]  # the report's "compute relative to MAE"
        assert compute["steps"] == 2 and compute["forward_passes_per_step"]["encoder"] >= 1
    test_metrics = json.loads((data / "08_reporting" / "pretraining" / "test_metrics.json").read_text())
    assert len(test_metrics["per_seed"]["mlo_mae"][0]["per_class_recall"]) == 7
    assert set(test_metrics["differences_vs_vit"]) == {*METHODS[1:], "cnn"}
    assert set(test_metrics["probes"]) == set(METHODS)  # vit: the untrained encoder every method starts from
    for interval in test_metrics["differences_vs_vit"]["mae"].values():
        assert interval["low"] <= interval["estimate"] <= interval["high"]
    for scores in test_metrics["probes"].values():
        assert set(scores) == {"knn_accuracy", "knn_balanced_accuracy", "linear_accuracy",
                               "linear_balanced_accuracy"}
        assert all(0.0 <= value <= 1.0 for value in scores.values())
