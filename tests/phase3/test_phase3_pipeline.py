"""phase3 through Kedro's SequentialRunner on tiny seed ensembles and small synthetic splits."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from kedro.io import DataCatalog, DatasetError, MemoryDataset
from kedro.runner import SequentialRunner
from sklearn.metrics import recall_score

from dermascreen.evaluation.calibration import apply_calibrator
from dermascreen.evaluation.model_card import CARD_SECTIONS
from dermascreen.evaluation.mcnemar import holm_adjust, mcnemar_test
from dermascreen.inference.model import CheckpointError, ensemble_checkpoint
from dermascreen.models import build_model
from dermascreen.training.fit import predict_proba
from dermascreen.pipelines.phase3 import create_pipeline

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REPORT_SECTIONS = ["Data provenance", "Configuration", "Decision threshold", "Test results", "Seeds (test)",
                   "Per-subtype results (test)", "Comparison with the seed's reference",
                   "Model comparison and calibration"]
TINY = {"arch": "cnn", "filters": 8, "depth": 2, "dropout": 0.1, "dense": 16, "num_classes": 2, "weights": "none"}
NORMALIZATION = {"mean": [0.76, 0.54, 0.56], "std": [0.14, 0.15, 0.17]}
PROVENANCE = {"path": "data/01_raw/dermamnist_28.npz", "size": 28, "md5": "f" * 32, "official": False,
              "official_md5": "0744692d530f8e62ec473284d019b0c7", "source": "synthetic"}


HARDWARE = {"device": "cpu", "device_name": "test CPU", "precision": "fp32"}


def tiny_checkpoint(seed: int, run: str | None = None) -> dict:
    torch.manual_seed(seed)
    model = build_model(TINY)
    return {"config": dict(TINY), "state_dict": model.state_dict(), "normalization": NORMALIZATION,
            "training": {"lr": 0.001, "seed": seed}, "class_weights": [1.0, 3.0], "run": run or f"tiny_{seed}",
            "hardware": HARDWARE}


def tiny_ensemble(strategy: str, seeds: tuple[int, ...]) -> dict:
    """A strategy's seed ensemble, as phase2 exports it."""
    return ensemble_checkpoint([tiny_checkpoint(seed, f"{strategy}_seed{seed}") for seed in seeds], strategy)


def split(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 7, n).astype(np.int64)
    binary = np.isin(labels, [0, 1, 4]).astype(np.int64)  # akiec, bcc, mel
    images = rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)
    images[binary == 1, :, :, 0] = 255  # give the scores something to rank
    return {"images": images, "labels": labels, "binary": binary}


def catalog(root: Path, checkpoints: dict) -> DataCatalog:
    """conf/base/catalog_phase3.yml with files under ``root``, inputs as the lead's pipelines give them."""
    config = yaml.safe_load((PROJECT_ROOT / "conf/base/catalog_phase3.yml").read_text())
    for entry in config.values():
        if "filepath" in entry:
            entry["filepath"] = str(root / entry["filepath"])
    for name in checkpoints:
        config[name] = {"type": "dermascreen.datasets.TorchDataset", "filepath": str(root / f"data/06_models/{name}.pt")}
    result = DataCatalog.from_config(config)
    for name, checkpoint in checkpoints.items():
        if checkpoint is not None:
            result.save(name, checkpoint)
    params = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_phase3.yml").read_text())["phase3"]
    for name, value in {"val_set": split(120, 1), "test_set": split(160, 2), "data_provenance": PROVENANCE,
                        "params:phase3": params, "params:profile": "tiny"}.items():
        result[name] = MemoryDataset(value)
    return result


def run(root: Path, final=None) -> None:
    checkpoints = {"phase2_best_model": final or tiny_ensemble("tiny_0", (0, 3)), "phase1_best_model": tiny_checkpoint(1),
                   "phase2_alternatives": {"tiny_2": tiny_ensemble("tiny_2", (2, 4))}}
    SequentialRunner().run(create_pipeline(), catalog(root, checkpoints))


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("phase3")
    run(root)
    return root / "data"


def test_reports_metrics_and_dvc_plot_data_are_written(outputs):
    report = (outputs / "08_reporting/final_report.md").read_text()
    assert "NON-OFFICIAL" in report and "tiny_0" in report and "91.58%" in report
    html = (outputs / "08_reporting/final_report.html").read_text()
    assert html.count("data:image/png;base64,") == 5
    metrics = json.loads((outputs / "08_reporting/phase3_metrics.json").read_text())
    assert all(isinstance(value, (int, float)) for value in metrics.values())  # flat, numeric
    assert metrics["test_recall_low"] <= metrics["test_recall"] <= metrics["test_recall_high"]
    plots = outputs / "08_reporting/plots"
    assert (plots / "roc.csv").read_text().startswith("fpr,tpr,threshold")
    assert (plots / "pr.csv").read_text().startswith("recall,precision,threshold")
    assert (plots / "confusion.csv").read_text().startswith("actual,predicted")
    assert len((plots / "confusion.csv").read_text().splitlines()) == 161
    assert (plots / "threshold_sweep.csv").read_text().startswith("threshold,recall,precision,specificity,f1,f2")
    for name in ("threshold_sweep", "confusion", "roc", "pr", "reliability"):
        assert (outputs / f"08_reporting/phase3/{name}.png").read_bytes().startswith(b"\x89PNG")


def test_threshold_file_is_calibrated_on_validation_for_this_model(outputs):
    threshold = json.loads((outputs / "07_model_output/phase3/threshold.json").read_text())
    assert threshold["policy"] == "target_recall" and threshold["model_run"] == "tiny_0"
    assert threshold["operating_points"]["target_recall"]["recall"] >= 0.90
    assert threshold["threshold"] == threshold["operating_points"]["target_recall"]["threshold"]
    assert set(threshold["operating_points"]) == {"default", "target_recall", "max_f2", "youden"}


def test_mcnemar_compares_with_every_alternative_at_its_own_threshold_holm_corrected(outputs):
    mcnemar = json.loads((outputs / "08_reporting/phase3/mcnemar.json").read_text())
    thresholds = json.loads((outputs / "07_model_output/phase3/alternative_thresholds.json").read_text())
    names = [c["alternative"] for c in mcnemar["comparisons"]]
    assert names == ["phase2.tiny_2", "phase1.tiny_1"] and set(thresholds) == set(names)
    predictions = pd.read_csv(outputs / "07_model_output/phase3/test_predictions.csv")
    binary = predictions["binary"].to_numpy()
    final = predictions["predicted"].to_numpy()
    p_values = []
    for comparison in mcnemar["comparisons"]:
        name = comparison["alternative"]
        assert comparison["threshold"] == thresholds[name]["threshold"] and thresholds[name]["model_run"] == name.split(".")[1]
        other = (predictions[f"p_malignant_{name}"].to_numpy() >= comparison["threshold"]).astype(int)
        assert comparison == {**comparison, **mcnemar_test(binary, final, other)}
        p_values.append(comparison["p_value"])
    assert [c["p_holm"] for c in mcnemar["comparisons"]] == pytest.approx(holm_adjust(p_values))
    metrics = json.loads((outputs / "08_reporting/phase3_metrics.json").read_text())
    assert metrics["mcnemar_phase1.tiny_1_p_holm"] == mcnemar["comparisons"][1]["p_holm"]


def test_subtype_results_match_sklearn_on_the_saved_prediction_table(outputs):
    predictions = pd.read_csv(outputs / "07_model_output/phase3/test_predictions.csv")
    subtypes = json.loads((outputs / "08_reporting/phase3/subtypes.json").read_text())
    metrics = json.loads((outputs / "08_reporting/phase3_metrics.json").read_text())
    names = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
    assert list(subtypes) == list(names)
    for label, name in enumerate(names):
        rows = predictions[predictions["label"] == label]
        malignant = name in ("akiec", "bcc", "mel")
        # recall of the malignant class on its rows; for a benign class the FPR = 1 - its specificity
        expected = (recall_score(rows["binary"], rows["predicted"], zero_division=0) if malignant
                    else 1.0 - recall_score(rows["binary"], rows["predicted"], pos_label=0, zero_division=0))
        key = f"test_{'recall' if malignant else 'fpr'}_{name}"
        assert subtypes[name]["estimate"] == pytest.approx(expected) == metrics[key]
        assert metrics[f"{key}_low"] <= metrics[key] <= metrics[f"{key}_high"]
    assert "Per-subtype results (test)" in (outputs / "08_reporting/final_report.md").read_text()


def test_threshold_is_on_calibrated_scores_and_the_export_holds_calibrator_and_threshold(outputs):
    calibrator = json.loads((outputs / "07_model_output/phase3/calibrator.json").read_text())
    threshold = json.loads((outputs / "07_model_output/phase3/threshold.json").read_text())
    exported = torch.load(outputs / "06_models/phase3/final.pt", weights_only=True)
    assert calibrator["method"] == "temperature" and calibrator["temperature"] > 0
    assert exported["calibration"] == calibrator and exported["operating_point"]["threshold"] == threshold["threshold"]
    assert exported["run"] == "tiny_0" and [m["seed"] for m in exported["members"]] == [0, 3]
    predictions = pd.read_csv(outputs / "07_model_output/phase3/test_predictions.csv")
    assert predictions["p_malignant"].to_numpy() == pytest.approx(
        apply_calibrator(calibrator, predictions["p_malignant_uncalibrated"].to_numpy()))
    assert ((predictions["p_malignant"] >= threshold["threshold"]).astype(int) == predictions["predicted"]).all()
    summary = json.loads((outputs / "08_reporting/phase3/calibration.json").read_text())
    metrics = json.loads((outputs / "08_reporting/phase3_metrics.json").read_text())
    assert metrics["ece"] == summary["test_calibrated"]["ece"]
    assert metrics["ece_uncalibrated"] == summary["test_uncalibrated"]["ece"]
    assert metrics["temperature"] == calibrator["temperature"]
    assert "temperature scaling (T = " in (outputs / "08_reporting/final_report.md").read_text()


def test_model_card_and_report_contain_every_section(outputs):
    card = (outputs / "08_reporting/model_card.md").read_text()
    headings = [line.removeprefix("## ") for line in card.splitlines() if line.startswith("## ")]
    assert headings == list(CARD_SECTIONS)
    for fact in ("28x28", "NON-OFFICIAL copy", "split by image, not by patient", "light skin", "tiny_0",
                 "| mel | recall |", "| nv | false positive rate |", "temperature", "seeds 0, 3",
                 "--env tiny", "Its architecture (`"):  # the design note's grid or beyond it
        assert fact in card, fact
    report_md = (outputs / "08_reporting/final_report.md").read_text()
    report_headings = [line.removeprefix("## ") for line in report_md.splitlines() if line.startswith("## ")]
    assert report_headings == REPORT_SECTIONS


def test_final_probability_is_the_mean_of_the_seed_models_recomputed_from_the_export(outputs):
    predictions = pd.read_csv(outputs / "07_model_output/phase3/test_predictions.csv")
    exported = torch.load(outputs / "06_models/phase3/final.pt", weights_only=True)
    images = split(160, 2)["images"]  # the test split of catalog()
    members = []
    for i, member in enumerate(exported["members"]):  # each seed's weights rebuilt alone, scored alone
        model = build_model(exported["config"])
        model.load_state_dict({key.removeprefix(f"members.{i}."): value for key, value in exported["state_dict"].items()
                               if key.startswith(f"members.{i}.")})
        members.append(predict_proba(model, images, NORMALIZATION, 256, "cpu")[:, 1])  # phase3's batch
        assert predictions[f"p_malignant_{member['run']}"].to_numpy() == pytest.approx(members[-1], abs=1e-9)
    assert not np.allclose(members[0], members[1])  # two different models
    assert predictions["p_malignant_uncalibrated"].to_numpy() == pytest.approx(np.mean(members, axis=0), abs=1e-9)


def test_each_seed_models_test_metrics_at_its_own_threshold_with_intervals(outputs):
    seeds = json.loads((outputs / "08_reporting/phase3/seeds.json").read_text())
    thresholds = json.loads((outputs / "07_model_output/phase3/seed_thresholds.json").read_text())
    metrics = json.loads((outputs / "08_reporting/phase3_metrics.json").read_text())
    predictions = pd.read_csv(outputs / "07_model_output/phase3/test_predictions.csv")
    assert list(seeds["members"]) == ["tiny_0_seed0", "tiny_0_seed3"] == list(thresholds)
    recalls = []
    for run, entry in seeds["members"].items():
        assert entry["threshold"] == thresholds[run]["threshold"] and thresholds[run]["model_run"] == run
        decided = (predictions[f"p_malignant_{run}"] >= entry["threshold"]).astype(int)
        recall = recall_score(predictions["binary"], decided)
        recalls.append(recall)
        interval = entry["intervals"]["recall"]
        assert interval["estimate"] == pytest.approx(recall) == metrics[f"seed{entry['seed']}_test_recall"]
        assert interval["low"] <= recall <= interval["high"]
        assert metrics[f"seed{entry['seed']}_test_roc_auc_low"] <= metrics[f"seed{entry['seed']}_test_roc_auc"]
    assert metrics["seeds_test_recall_mean"] == pytest.approx(np.mean(recalls))
    assert metrics["seeds_test_recall_std"] == pytest.approx(np.std(recalls, ddof=1))
    assert "test_recall" in metrics and "test_recall_low" in metrics  # the ensemble's, as before
    report_md = (outputs / "08_reporting/final_report.md").read_text()
    assert "| tiny_0_seed3 (seed 3) |" in report_md and "| ensemble (final, calibrated) |" in report_md


def test_rerun_gives_identical_numbers(outputs, tmp_path):
    run(tmp_path)
    for name in ("08_reporting/phase3_metrics.json", "07_model_output/phase3/threshold.json",
                 "08_reporting/phase3/test_intervals.json", "08_reporting/final_report.md",
                 "08_reporting/model_card.md"):
        assert (tmp_path / "data" / name).read_text() == (outputs / name).read_text(), name


def test_missing_model_file_is_a_clear_error(tmp_path):
    checkpoints = {"phase2_best_model": None, "phase1_best_model": tiny_checkpoint(1), "phase2_alternatives": {}}
    with pytest.raises(DatasetError, match="phase2_best_model.pt"):
        SequentialRunner().run(create_pipeline(), catalog(tmp_path, checkpoints))


def test_model_that_does_not_match_its_config_is_a_clear_error(tmp_path):
    broken = tiny_ensemble("tiny_0", (0, 3))
    broken["config"] = {**TINY, "dense": 32}
    with pytest.raises(CheckpointError, match="run 'tiny_0'.*weights do not match the model config"):
        run(tmp_path, final=broken)
