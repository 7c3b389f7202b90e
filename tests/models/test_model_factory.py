"""build_model: dispatch, config errors, checkpoint weights (ImageNet weights: test_weights.py)."""

from __future__ import annotations

import pytest
import torch

from dermascreen.models import build_model

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
