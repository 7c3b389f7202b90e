"""The preflight check: every problem of a run at once, before its first node; quiet when all is well."""

from __future__ import annotations

import copy
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
import torch
from kedro.pipeline import Pipeline

from dermascreen.pipelines import data_engineering, phase1, phase2, phase3, pretraining
from dermascreen.preflight import (Report, _check_disk, check, checkpoint_bytes, cuda_problem, min_driver,
                                   reachable, supports_capability)
from project_helpers import PROJECT_ROOT, closed_local_endpoint, load_config, real_npz_path


def experiment(parameters: dict) -> Pipeline:
    """The whole experiment as `kedro run` builds it for these parameters."""
    return (data_engineering.create_pipeline() + pretraining.create_pipeline()
            + phase1.create_pipeline(parameters=parameters["phase1"]) + phase2.create_pipeline(parameters=parameters)
            + phase3.create_pipeline())


def test_base_on_a_machine_without_its_gpu_and_weights_lists_every_problem(tmp_path):
    parameters = {**load_config("base", "parameters"), "weights_dir": str(tmp_path / "weights")}
    catalog = load_config("base", "catalog")
    catalog["dermamnist_raw"]["local_file"] = str(tmp_path / "no-such.npz")
    report = check(experiment(parameters), parameters, catalog, tmp_path)
    problems = "\n".join(report.problems)
    weights = [p for p in report.problems if p.startswith("ImageNet weights")]
    assert len(weights) == 1
    for name in ("resnet50.a1_in1k", "vgg16.tv_in1k", "efficientnet_b0.ra_in1k"):
        assert f"{name}.safetensors" in weights[0]
    assert "dermascreen-weights fetch" in weights[0] and "dvc pull" in weights[0]
    assert f"DERMAMNIST_NPZ points at {tmp_path / 'no-such.npz'}, which is not a file" in problems
    if cuda_problem() is not None:  # this machine cannot train on CUDA: base's request is a problem too
        assert len(report.problems) == 3
        assert ("device: cuda (phase1.training.device, phase2.training.device, "
                "pretraining.finetune.cnn.training.device, pretraining.finetune.training.device, "
                "pretraining.shared.device): ") in problems
    else:
        assert len(report.problems) == 2
    assert report.facts[0].startswith(f"torch {torch.__version__}")
    assert report.text().endswith(report.problems[-1])


def test_missing_weights_pass_before_a_fetch_only_while_the_hub_answers(tmp_path, monkeypatch):
    """`make all` checks before `dermascreen-weights fetch` downloads: the files it will fetch are no
    problem while the hub accepts a connection (here a local listening socket), one once it does not."""
    from huggingface_hub import constants as hub

    parameters = {**load_config("base", "parameters"), "weights_dir": str(tmp_path / "weights")}
    pipeline = phase1.create_pipeline(parameters=parameters["phase1"])
    catalog = load_config("base", "catalog")
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
    with socket.create_server(("127.0.0.1", 0)) as server:
        monkeypatch.setattr(hub, "ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        report = check(pipeline, parameters, catalog, tmp_path, weights_from_hub=True)
        assert not [problem for problem in report.problems if problem.startswith("ImageNet weights")]
        assert any("3 file(s) to download" in fact and "dermascreen-weights fetch" in fact for fact in report.facts)
        before_training = check(pipeline, parameters, catalog, tmp_path)  # the hook's: training never downloads
        assert len([p for p in before_training.problems if p.startswith("ImageNet weights")]) == 1
        (tmp_path / "weights").mkdir()
        (tmp_path / "weights" / "manifest.json").write_text("{not json")  # a fetch cannot mend a broken manifest
        broken = check(pipeline, parameters, catalog, tmp_path, weights_from_hub=True)
        assert len([p for p in broken.problems if p.startswith("ImageNet weights")]) == 1
        (tmp_path / "weights" / "manifest.json").unlink()
    unreachable = check(pipeline, parameters, catalog, tmp_path, weights_from_hub=True)  # the socket is closed
    assert len([problem for problem in unreachable.problems if problem.startswith("ImageNet weights")]) == 1


def test_tiny_passes_on_this_machine_offline(tmp_path):
    npz = real_npz_path()
    if npz is None:
        pytest.skip("real DermaMNIST file absent: set DERMAMNIST_NPZ")
    parameters = load_config("tiny", "parameters")
    catalog = load_config("tiny", "catalog")
    catalog["dermamnist_raw"]["local_file"] = str(npz)
    started = time.perf_counter()
    report = check(experiment(parameters), parameters, catalog, tmp_path)
    assert report.problems == []
    assert time.perf_counter() - started < 30
    assert f"data: {npz}" in report.facts


def test_only_the_nodes_that_run_are_checked(tmp_path):
    """phase2 starts from phase1's checkpoints: it needs no ImageNet weights, and no data file."""
    parameters = {**load_config("base", "parameters"), "weights_dir": str(tmp_path / "weights")}
    parameters["phase2"]["training"]["device"] = "cpu"
    report = check(phase2.create_pipeline(parameters=parameters), parameters, {}, tmp_path)
    assert report.problems == []


def test_the_disk_estimate_grows_with_models_and_trainable_parameters():
    parameters = load_config("base", "parameters")
    grid = phase1.create_pipeline(parameters=parameters["phase1"])

    def estimate(run: str) -> int:
        return checkpoint_bytes(grid.only_nodes_with_namespaces([f"phase1.{run}"]), parameters)

    resnet_frozen, resnet_all, cnn = estimate("ResNet_v1_W0"), estimate("ResNet_v3_W0"), estimate("CNN_v1_W0")
    assert cnn < resnet_frozen < resnet_all
    # at least best.pt, its DVC copy, and a state of the model, the best copy and Adam's two moments (fp32)
    assert resnet_all >= 4 * 24_000_000 * (2 + 4)
    assert checkpoint_bytes(phase3.create_pipeline(), parameters) == 0


def test_the_disk_estimate_counts_an_encoder_per_pretraining_seed():
    parameters = load_config("base", "parameters")
    one = copy.deepcopy(parameters)
    one["pretraining"]["shared"]["pretrain_seeds"] = [42]
    seeds = len(parameters["pretraining"]["finetune"]["seeds"])
    # per pretraining seed: 5 encoders and their 5 x seeds classifiers; the ViT's seeds once
    assert (checkpoint_bytes(pretraining.create_pipeline(parameters=parameters), parameters)
            * (5 + 6 * seeds) == checkpoint_bytes(pretraining.create_pipeline(parameters=one), one) * (15 + 16 * seeds))


def test_too_little_disk_is_a_problem(tmp_path):
    report = Report()
    _check_disk(report, shutil.disk_usage(tmp_path).free + 2**40, tmp_path)
    assert report.problems and report.problems[0].startswith("disk: about ")


@pytest.mark.parametrize("arch_list, capability, supported", [
    (["sm_75", "sm_80", "sm_86", "sm_90"], (8, 6), True),
    (["sm_75", "sm_80"], (8, 9), True),       # an sm_80 binary runs on later 8.x GPUs
    (["sm_75", "sm_80"], (9, 0), False),      # not on a new major version
    (["sm_80", "compute_80"], (9, 0), True),  # PTX is compiled for it at load time
    (["sm_75", "sm_80"], (7, 0), False),      # an older GPU than any binary
    (["sm_90a"], (9, 0), False),              # arch-specific code is not counted
])
def test_gpu_architecture_support(arch_list, capability, supported):
    assert supports_capability(arch_list, *capability) is supported


def test_driver_minimum_per_cuda_major_version():
    assert min_driver("13.0") == (580,)
    assert min_driver("12.8") == (525, 60, 13)
    assert min_driver("11.8") == (450, 80, 2)


def test_an_unreachable_host_is_detected_in_seconds():
    started = time.perf_counter()
    assert reachable(closed_local_endpoint(), timeout=1.0) is False
    assert time.perf_counter() - started < 5


def run_project(*args: str, **env_vars: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "src"), "HF_HUB_OFFLINE": "1", "KEDRO_DISABLE_TELEMETRY": "1",
           "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}", **env_vars}
    return subprocess.run(args, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_kedro_run_stops_before_the_first_node_with_every_problem(tmp_path):
    """The hook: `kedro run` of base's phase1 without weights (and, on a CPU machine, without CUDA) trains nothing."""
    state_dir = tmp_path / "state"
    result = run_project("kedro", "run", "--env", "base", "--pipelines", "phase1",
                         "--params", f"weights_dir={tmp_path / 'weights'},phase1.state_dir={state_dir}")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Error: the preflight check stopped the run before its first node:" in output
    assert "Traceback" not in output  # the problems alone, not a stack trace
    assert "resnet50.a1_in1k.safetensors (resnet50): missing" in output
    assert not state_dir.exists()  # no run started
    if cuda_problem() is not None:
        assert "device: cuda (phase1.training.device)" in output


@pytest.mark.slow
def test_command_line_checks_a_whole_profile():
    if real_npz_path() is None:
        pytest.skip("real DermaMNIST file absent: set DERMAMNIST_NPZ")
    result = run_project(sys.executable, "-m", "dermascreen.preflight", "--env", "tiny",
                         DERMAMNIST_NPZ=str(real_npz_path()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"preflight: torch {torch.__version__}" in result.stdout
    assert "problem" not in result.stdout
