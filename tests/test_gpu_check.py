"""`make gpu-check` (benchmarks/gpu_check.py) proven on the CPU in its smallest form."""

from __future__ import annotations

import json

import pytest
import torch

from dermascreen.training.device import resolve_precision
from project_helpers import benchmark_module

gpu_check = benchmark_module("gpu_check")


@pytest.mark.slow
def test_quick_cpu_run_runs_the_cuda_tests_then_times_an_epoch(tmp_path, capfd):
    """One architecture: the timing is the same code for each, and every architecture's `base`
    run is proven by the CPU twins of tests/training/test_gpu_ready.py."""
    output = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--device", "cpu", "--quick", "--archs", "cnn", "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["device"] == "cpu" and report["quick"] is True and report["problems"] == []
    tests = report["tests"]
    assert tests["command"] == "pytest -m cuda -q -p no:cacheprovider tests/training/test_gpu_ready.py"
    # without CUDA every cuda test is collected and skipped, none fails
    assert tests["returncode"] == 0 and tests["skipped"] == tests["tests"] >= 8 and tests["passed"] == 0
    assert "needs a CUDA GPU and torch sees none" in capfd.readouterr().out  # pytest, a subprocess
    (row,) = report["epochs"]
    assert row["arch"] == "cnn" and row["run"] == "CNN_v3" and row["lr"] == 0.0005
    # base asks for `auto`: bf16 on a CPU with AMX, fp32 on others
    assert row["precision"] == resolve_precision(torch.device("cpu"), "auto") and row["peak_memory_mib"] is None
    assert row["train_images"] == row["batch_size"] == gpu_check.QUICK_BATCH
    assert row["train_images_per_s"] > 0 and row["val_s"] > 0
    assert not list(tmp_path.glob("*.xml"))


def test_base_runs_are_the_base_grid_with_random_weights():
    runs = gpu_check.base_runs(gpu_check.base_parameters())
    assert {arch: run["run"] for arch, run in runs.items()} == {
        "cnn": "CNN_v3", "resnet50": "ResNet_v3", "vgg16": "VGG_v3", "efficientnet_b0": "EffNet_v3", "vit": "ViT_MAE"}
    assert runs["resnet50"]["model"] == {"arch": "resnet50", "weights": "none", "unfreeze": "all", "dropout": 0.5,
                                         "dense": 256, "num_classes": 2}
    assert runs["resnet50"]["training"]["batch_size"] == 64 and runs["resnet50"]["training"]["lr"] == 0.0001
    assert runs["vit"]["model"]["embed_dim"] == 192 and runs["vit"]["model"]["weights"] == "none"
    assert runs["cnn"]["training"]["epochs"] == 50 and runs["cnn"]["training"]["precision"] == "auto"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_without_cuda_it_says_so_and_fails(tmp_path, capsys):
    output = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--output", str(output)]) == 1
    assert "sees no CUDA GPU, so nothing was checked" in capsys.readouterr().err
    assert not output.exists()


def test_problems_fail_the_check():
    tests = {"returncode": 0, "failures": 0, "errors": 0, "skipped": 0, "passed": 8}
    rows = [{"arch": "vgg16", "train_loss": 0.7}]
    ok = {"device": "cuda", "tests": tests, "epochs": rows, "total_s": 300.0}
    assert gpu_check.problems_of(ok) == []
    assert "skipped" in gpu_check.problems_of({**ok, "tests": {**tests, "skipped": 8, "passed": 0}})[0]
    assert "failed" in gpu_check.problems_of({**ok, "tests": {**tests, "returncode": 1, "failures": 1}})[0]
    assert "nan" in gpu_check.problems_of({**ok, "epochs": [{"arch": "vit", "train_loss": float("nan")}]})[0]
    assert "over its 480 s budget" in gpu_check.problems_of({**ok, "total_s": 481.0})[0]
