"""The comparison report: mean ± std over seeds, both averages, provenance and reference figures."""

import pytest

from dermascreen.pretraining.report import (PROBE_LABELS, SUMMARY_METRICS, metrics_for_dvc, render_report, summarise,
                                            summarise_probes)


def _result(seed: int, accuracy: float, pretrain_seed: int | None = None) -> dict:
    return {"seed": seed, "pretrain_seed": pretrain_seed, **{metric: accuracy for metric in SUMMARY_METRICS},
            "per_class_recall": [accuracy] * 6 + [0.0]}


def _probes(*values: float) -> dict:
    """The probes of one encoder per pretraining seed (42, 43, ...), linear accuracy ``values``."""
    return summarise_probes({42 + k: {"knn_accuracy": 0.7, "knn_balanced_accuracy": 0.3, "linear_accuracy": value,
                                      "linear_balanced_accuracy": 0.25} for k, value in enumerate(values)})


RUN_INFO = {"command": "kedro run --pipelines pretraining --env quick", "profile": "quick", "seeds": [0, 1],
            "pretrain_seeds": [42, 43],
            "pretraining": "4 epochs", "finetune": "3 epochs", "cnn": "resnet_cifar, 6 epochs",
            "class_weights": "class weights (N / (7 n_c)) ** 0.5",
            "hardware": "pretraining on cpu (AMD EPYC), fp32, fine-tuning on cpu (AMD EPYC), fp32"}


def test_summary_is_mean_and_sample_std_over_seeds():
    summary = summarise([_result(0, 0.70), _result(1, 0.74), _result(2, 0.72)])
    assert summary["seeds"] == [0, 1, 2]
    assert summary["accuracy"]["mean"] == pytest.approx(0.72)
    assert summary["accuracy"]["std"] == pytest.approx(0.02)  # ddof=1
    assert summary["per_class_recall"]["vasc"]["mean"] == 0.0
    assert summarise([_result(0, 0.5)])["auc"]["std"] is None  # one seed: no spread


def test_summary_pools_every_pretraining_and_fine_tuning_seed():
    runs = [_result(seed, accuracy, pretrain_seed) for (pretrain_seed, seed), accuracy in
            zip(((42, 0), (42, 1), (43, 0), (43, 1)), (0.70, 0.72, 0.74, 0.76), strict=True)]
    summary = summarise(runs)
    assert summary["seeds"] == [0, 1, 0, 1] and summary["pretrain_seeds"] == [42, 42, 43, 43]
    assert summary["accuracy"]["mean"] == pytest.approx(0.73)
    assert summary["accuracy"]["std"] == pytest.approx(0.0258198889747)  # ddof=1 over the 4 runs
    assert summary["accuracy"]["values"] == [0.70, 0.72, 0.74, 0.76]


def test_probes_are_summarised_over_pretraining_seeds():
    probes = _probes(0.70, 0.74)
    assert probes["pretrain_seeds"] == [42, 43] and set(probes) == {"pretrain_seeds", *PROBE_LABELS}
    assert probes["linear_accuracy"]["mean"] == pytest.approx(0.72)
    assert probes["linear_accuracy"]["std"] == pytest.approx(0.0282842712)
    assert probes["knn_accuracy"]["std"] == 0.0


def test_report_names_the_run_the_data_and_the_references():
    summaries = {"vit": summarise([_result(0, 0.70), _result(1, 0.72)]),
                 "mlo_mae": summarise([_result(0, 0.75, 42), _result(1, 0.77, 42), _result(0, 0.75, 43),
                                       _result(1, 0.77, 43)])}
    provenance = {"path": "/data/dermamnist_28.npz", "md5": "a032e8b2", "official": False}
    differences = {"mlo_mae": {"accuracy": {"estimate": 0.05, "low": 0.01, "high": 0.09},
                               "balanced_accuracy": {"estimate": -0.02, "low": -0.06, "high": 0.03}}}
    probes = {"vit": _probes(0.67, 0.69), "mlo_mae": _probes(0.72, 0.72)}
    compute = {"vit": {"pretraining_s": None, "encoder_tokens_per_step": None, "finetuning_s": 100.0},
               "mae": {"pretraining_s": 50.0, "encoder_tokens_per_step": 1000, "finetuning_s": 90.0},
               "mlo_mae": {"pretraining_s": 250.0, "encoder_tokens_per_step": 8240, "finetuning_s": 110.0}}
    report = render_report(summaries, provenance, RUN_INFO, differences, probes, compute)
    assert "`kedro run --pipelines pretraining --env quick` (profile `quick`)" in report
    assert "md5 `a032e8b2`, NOT the official file" in report
    assert "Hardware: pretraining on cpu (AMD EPYC), fp32, fine-tuning on cpu (AMD EPYC), fp32." in report
    assert "Fine-tuning seeds: [0, 1]; pretraining seeds: [42, 43] (one encoder per method" in report
    assert "| runs (pretraining x fine-tuning seeds) | 2 | 2 x 2 |" in report
    assert "| accuracy | 71.00 ± 1.41 | 76.00 ± 1.15 |" in report
    assert "| macro_f1 |" in report and "| weighted_f1 |" in report
    assert "70.62 | 78.20" in report  # the seed's figures for ViT and MLO-MAE
    assert "73.5%" in report and "0.917" in report  # MedMNIST v2 ResNet-18 (28)
    assert "best epoch chosen on the *test* split (its last epoch: 75.9)" in report  # the note's figures
    assert "| MLO-MAE | +5.00 [+1.00, +9.00] | -2.00 [-6.00, +3.00] |" in report
    assert "| epoch 0 (untrained) | 70.00 ± 0.00 | 30.00 ± 0.00 | 68.00 ± 1.41 | 25.00 ± 0.00 |" in report
    assert "| MLO-MAE | 250 | 8.24 | 110 |" in report and "| ViT (no pretraining) | none | none | 100 |" in report
    official = render_report(summaries, {**provenance, "official": True}, RUN_INFO, differences, probes, compute)
    assert "NOT the official file" not in official


def test_dvc_metrics_are_flat_per_method():
    metrics = metrics_for_dvc({"mae": summarise([_result(0, 0.6), _result(1, 0.8)])})
    assert metrics["mae"]["accuracy_mean"] == pytest.approx(0.7)
    assert set(metrics["mae"]) == {f"{m}_{s}" for m in SUMMARY_METRICS for s in ("mean", "std")}
    assert set(metrics_for_dvc({"mae": summarise([_result(0, 0.6)])})["mae"]) == {f"{m}_mean" for m in SUMMARY_METRICS}
