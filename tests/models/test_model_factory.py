"""build_model: dispatch, config errors, checkpoint weights, ImageNet weights without a hub."""

from __future__ import annotations

import socket

import pytest
import timm
import torch
from huggingface_hub import constants
from safetensors.torch import save_file

from dermascreen.models import WeightsUnavailableError, build_model
from dermascreen.models.transfer import hub_reachable

CNN_V1 = {"arch": "cnn", "filters": 32, "depth": 3, "dropout": 0.5, "dense": 512}


def outputs(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(images)


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("arch", ["cnn", "resnet50", "vgg16", "efficientnet_b0", "vit"])
def test_every_arch_maps_28x28_to_logits_also_channels_last(arch, images):
    torch.manual_seed(0)
    model = build_model({"arch": arch, "num_classes": 3})
    logits = outputs(model, images)
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    channels_last = outputs(model.to(memory_format=torch.channels_last),
                            images.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(channels_last, logits, atol=1e-4, rtol=1e-4)


def test_num_classes_defaults_to_two(images):
    assert outputs(build_model({"arch": "cnn"}), images).shape == (2, 2)


@pytest.mark.parametrize("config, message", [
    ({"arch": "resnet"}, r"arch='resnet': allowed values are cnn, resnet_cifar, resnet50, vgg16, efficientnet_b0, vit"),
    ({}, r"arch=None: allowed values"),
    ({**CNN_V1, "filter": 32}, r"unknown key\(s\) 'filter'; allowed keys are arch, name, .*filters"),
    ({"arch": "vgg16", "depth": 3}, r"unknown key\(s\) 'depth'.*dense, dropout, image_size, input_size"),
    ({**CNN_V1, "num_classes": 1}, r"num_classes must be an integer >= 2, got 1"),
    ({**CNN_V1, "unfreeze": -1}, r"unfreeze must be 0, a positive number of layers or 'all', got -1"),
    ({**CNN_V1, "unfreeze": "top"}, r"unfreeze .* got 'top'"),
    ({**CNN_V1, "weights": "imagenet"}, r"arch 'cnn' has no pretrained weights"),
    ({**CNN_V1, "weights": 3}, r"weights must be none, imagenet or a checkpoint path, got 3"),
    ({**CNN_V1, "dropout": 1.0}, r"cnn dropout must be in \[0, 1\), got 1.0"),
    ({**CNN_V1, "filters": 0}, r"cnn filters must be a positive integer, got 0"),
    ({"arch": "efficientnet_b0", "dense": "big"}, r"efficientnet_b0 dense must be a positive integer, got 'big'"),
    ({"arch": "vgg16", "dropout": "0.5"}, r"vgg16 dropout must be in \[0, 1\), got '0.5'"),
])
def test_bad_configs_name_the_key_and_the_allowed_values(config, message):
    with pytest.raises(ValueError, match=message):
        build_model(config)


def test_checkpoint_path_restores_the_model(tmp_path, images):
    torch.manual_seed(1)
    trained = build_model(CNN_V1)
    torch.save({"config": CNN_V1, "state_dict": trained.state_dict(), "normalization": {"mean": [0.5] * 3}},
               tmp_path / "best.pt")
    torch.save(trained.state_dict(), tmp_path / "bare.pt")
    expected = outputs(trained, images)
    for name in ("best.pt", "bare.pt"):
        torch.manual_seed(2)  # a different random init, overwritten by the checkpoint
        restored = build_model({**CNN_V1, "weights": str(tmp_path / name)})
        torch.testing.assert_close(outputs(restored, images), expected, atol=0, rtol=0)


def test_checkpoint_of_the_backbone_alone_loads_into_the_backbone(tmp_path):
    torch.manual_seed(1)
    source = build_model({"arch": "efficientnet_b0"})
    torch.save(source.backbone.state_dict(), tmp_path / "encoder.pt")
    torch.manual_seed(2)
    model = build_model({"arch": "efficientnet_b0", "weights": tmp_path / "encoder.pt"})
    for key, value in source.backbone.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[key], value, atol=0, rtol=0)
    assert not torch.equal(model.head[1].weight, source.head[1].weight)  # the head keeps its own init


def test_bad_checkpoints_get_clear_errors(tmp_path):
    missing = tmp_path / "nothing.pt"
    with pytest.raises(FileNotFoundError, match=f"{missing}: model weights file not found"):
        build_model({**CNN_V1, "weights": str(missing)})
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=f"{garbage}: not a readable PyTorch checkpoint"):
        build_model({**CNN_V1, "weights": str(garbage)})
    wider = tmp_path / "wider.pt"
    torch.save({"config": {**CNN_V1, "filters": 64}, "state_dict": build_model({**CNN_V1, "filters": 64}).state_dict()},
               wider)
    with pytest.raises(ValueError, match=f"{wider}: weights do not match the model config .*wrong shape 16: backbone.0.0.weight"):
        build_model({**CNN_V1, "weights": str(wider)})
    deeper = tmp_path / "deeper.pt"
    torch.save(build_model({**CNN_V1, "depth": 4}).state_dict(), deeper)
    with pytest.raises(ValueError, match=r"unexpected 6: backbone.3.0.weight, .* \(\+1 more\); wrong shape 1: head.1.weight"):
        build_model({**CNN_V1, "weights": str(deeper)})
    other_arch = tmp_path / "vgg.pt"
    torch.save({"config": {"arch": "vgg16"}, "state_dict": {"w": torch.zeros(1)}}, other_arch)
    with pytest.raises(ValueError, match=f"{other_arch}: checkpoint is for arch 'vgg16', the model config says 'cnn'"):
        build_model({**CNN_V1, "weights": str(other_arch)})


def closed_local_endpoint() -> str:
    with socket.socket() as probe:  # a port that was free a moment ago refuses connections
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_unreachable_hub_is_detected_without_retries(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", closed_local_endpoint())
    assert hub_reachable(timeout=1.0) is False
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub_reachable(timeout=1.0) is False


def test_imagenet_weights_missing_offline_raise_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", closed_local_endpoint())
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(WeightsUnavailableError, match=r"resnet50: ImageNet weights for timm model 'resnet50' "
                                                      r"are not in the local cache .*empty-cache.* cannot be reached"):
        build_model({"arch": "resnet50", "weights": "imagenet"})
    assert constants.HF_HUB_OFFLINE is False  # the cache-only switch is undone
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsUnavailableError, match=r"vgg16: .* and HF_HUB_OFFLINE is set: .*Fetch them"):
        build_model({"arch": "vgg16", "weights": "imagenet"})


def fake_hub_cache(cache, timm_name: str, state: dict[str, torch.Tensor]) -> None:
    """Lay ``state`` out as huggingface_hub caches ``timm/<default tag>``'s model.safetensors."""
    repo_id = timm.create_model(timm_name, pretrained=False).pretrained_cfg["hf_hub_id"]
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    revision = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    (repo / "snapshots" / revision).mkdir(parents=True)
    save_file(state, str(repo / "snapshots" / revision / "model.safetensors"))


def test_imagenet_weights_load_from_the_local_cache_through_timm(monkeypatch, tmp_path):
    torch.manual_seed(5)
    pretrained = timm.create_model("efficientnet_b0", pretrained=False).state_dict()
    fake_hub_cache(tmp_path, "efficientnet_b0", {k: v.contiguous() for k, v in pretrained.items()})
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", closed_local_endpoint())
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    torch.manual_seed(6)
    model = build_model({"arch": "efficientnet_b0", "weights": "imagenet", "unfreeze": 0})
    loaded = model.backbone.state_dict()
    assert "classifier.weight" not in loaded
    for key, value in loaded.items():
        torch.testing.assert_close(value, pretrained[key], atol=0, rtol=0)
