"""ImageNet weights from a local directory: manifest, sha256 checks, clear errors, the CLI.

The "weights file" here is a randomly initialised timm model saved the way the hub stores
timm weights (a full-model safetensors state dict): it exercises the file, manifest and loading
mechanics, and says nothing about ImageNet.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from huggingface_hub import constants
from safetensors.torch import save_file

from dermascreen import weights_cli
from dermascreen.models import WeightsUnavailableError, build_model
from dermascreen.models.weights import IMAGENET_TAGS, MANIFEST, check, fetch, file_name, hub_reachable, record
from project_helpers import PROJECT_ROOT, closed_local_endpoint

ARCH = "efficientnet_b0"  # the smallest timm architecture (21 MB of weights)


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A hub-style weights file of randomly initialised efficientnet_b0 (classifier included)."""
    torch.manual_seed(5)
    model = timm.create_model(IMAGENET_TAGS[ARCH], pretrained=False)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    path = tmp_path_factory.mktemp("download") / "model.safetensors"
    save_file(state, str(path))
    return path, state


def test_recorded_file_loads_through_timm_with_its_manifest(tmp_path, random_weights):
    source, state = random_weights
    entry = record(tmp_path, ARCH, source)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest == {"weights": [entry]}
    assert entry == {"arch": ARCH, "timm_tag": "efficientnet_b0.ra_in1k", "hub_id": "timm/efficientnet_b0.ra_in1k",
                     "file": "efficientnet_b0.ra_in1k.safetensors", "size": source.stat().st_size,
                     "sha256": hashlib.sha256(source.read_bytes()).hexdigest()}
    torch.manual_seed(6)  # the head's initialisation; the backbone comes from the file
    model = build_model({"arch": ARCH, "weights": "imagenet", "unfreeze": 0}, weights_dir=tmp_path)
    loaded = model.backbone.state_dict()
    assert "classifier.weight" not in loaded  # timm dropped the 1000-class classifier (num_classes=0)
    for key, value in loaded.items():
        torch.testing.assert_close(value, state[key], atol=0, rtol=0)


def test_a_changed_file_is_refused_before_use(tmp_path, random_weights):
    record(tmp_path, ARCH, random_weights[0])
    path = tmp_path / file_name(ARCH)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, one flipped byte
    path.write_bytes(bytes(data))
    digest = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(WeightsUnavailableError, match=rf"efficientnet_b0.ra_in1k.safetensors \(efficientnet_b0\): "
                                                      rf"sha256 {digest}, the manifest says [0-9a-f]{{64}}"):
        build_model({"arch": ARCH, "weights": "imagenet"}, weights_dir=tmp_path)


def test_missing_files_are_all_named_with_the_command_that_provides_them(tmp_path, random_weights):
    record(tmp_path, ARCH, random_weights[0])
    (tmp_path / "vgg16.tv_in1k.safetensors").write_bytes(b"copied without its manifest entry")
    with pytest.raises(WeightsUnavailableError) as error:
        check(tmp_path, ["resnet50", "vgg16", ARCH])
    message = str(error.value)
    assert "resnet50.a1_in1k.safetensors (resnet50): missing" in message
    assert "vgg16.tv_in1k.safetensors (vgg16): not listed in manifest.json" in message
    assert "efficientnet_b0" not in message  # the good file is not a problem
    for route in ("`dermascreen-weights fetch --profile <profile>`", f"dvc pull {tmp_path}", "weights_dir"):
        assert route in message


def test_a_broken_manifest_is_a_problem_that_says_what_to_do(tmp_path):
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(WeightsUnavailableError, match=rf"{MANIFEST}: not a weights manifest .* delete it and run "
                                                      r"`dermascreen-weights fetch`"):
        check(tmp_path, [ARCH])


def test_imagenet_weights_need_a_weights_directory():
    with pytest.raises(ValueError, match=r"resnet50 weights=imagenet: no weights directory given "
                                         r"\(parameter weights_dir"):
        build_model({"arch": "resnet50", "weights": "imagenet"})


def test_fetch_keeps_good_files_and_never_downloads_them_again(tmp_path, random_weights):
    record(tmp_path, ARCH, random_weights[0])

    def no_download(arch: str) -> Path:
        raise AssertionError(f"{arch} was downloaded again")

    assert fetch(tmp_path, [ARCH], download=no_download) == [
        "efficientnet_b0.ra_in1k.safetensors: present, sha256 matches manifest.json"]


def test_fetch_offline_fails_at_once_naming_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsUnavailableError, match=r"(?s)hub is not reachable.*resnet50.a1_in1k.safetensors "
                                                      r"\(resnet50\): missing.*dvc pull"):
        fetch(tmp_path, ["resnet50"])
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_unreachable_hub_is_detected_without_retries(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", closed_local_endpoint())
    assert hub_reachable(timeout=1.0) is False
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub_reachable(timeout=1.0) is False


def test_cli_fetch_for_a_cnn_profile_and_verify(tmp_path, monkeypatch, capsys, random_weights):
    monkeypatch.chdir(PROJECT_ROOT)  # the CLI reads the profile's conf/ from the project root
    assert weights_cli.main(["fetch", "--profile", "quick", "--dir", str(tmp_path / "quick")]) == 0
    assert "profile quick: no ImageNet weights needed" in capsys.readouterr().out  # CNN runs only: works offline
    assert json.loads((tmp_path / "quick" / MANIFEST).read_text()) == {"weights": []}

    record(tmp_path / "some", ARCH, random_weights[0])
    assert weights_cli.main(["verify", "--all", "--dir", str(tmp_path / "some")]) == 1
    errors = capsys.readouterr().err
    assert "resnet50.a1_in1k.safetensors (resnet50): missing" in errors
    assert "vgg16.tv_in1k.safetensors (vgg16): missing" in errors
    assert "efficientnet_b0.ra_in1k" not in errors
    assert weights_cli.main(["verify", "--profile", "quick", "--dir", str(tmp_path / "some")]) == 0


@pytest.mark.slow
def test_cli_fetch_offline_fails_naming_every_missing_file(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(PROJECT_ROOT / "src")}
    base = subprocess.run([sys.executable, "-m", "dermascreen.weights_cli", "fetch", "--profile", "base", "--dir",
                           str(tmp_path)], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert base.returncode == 1
    for name in ("resnet50.a1_in1k", "vgg16.tv_in1k", "efficientnet_b0.ra_in1k"):
        assert f"{name}.safetensors" in base.stderr
    assert "hub is not reachable" in base.stderr and "dvc pull" in base.stderr
