"""``build_model(config)``: the one way to build a model from its config (docs/models.md).

Common keys: ``arch`` (one of ``ARCHS``), ``name`` (a free label such as ``CNN_v1``),
``num_classes`` (default 2), ``weights`` (``none``, ``imagenet`` for the timm archs, read from
``weights_dir``, or a checkpoint path), ``unfreeze`` (0, N or ``all``, default ``all``: N counts
Keras layers, see ``set_trainable``) and ``supervision`` (``binary``, default, or ``labels``: a
2-class model whose p(malignant) sums the malignant classes of a 7-class network,
``models.supervision``). Each arch adds its own keys, ``image_size`` (the data's side, default 28)
among them; an unknown key is an error. ``vit`` is built by
``dermascreen.models.vit.build_vit``, which reads its own keys and weights.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dermascreen.models import cnn, resnet_cifar, transfer
from dermascreen.models.layers import backbone_of, parse_unfreeze, set_trainable
from dermascreen.models.supervision import SUPERVISIONS, SummedClasses, num_labels

ARCHS = ("cnn", "resnet_cifar", "resnet50", "vgg16", "efficientnet_b0", "vit")
COMMON_KEYS = ("arch", "name", "num_classes", "weights", "unfreeze", "supervision")
ARCH_KEYS = {"cnn": tuple(cnn.DEFAULTS), "resnet_cifar": tuple(resnet_cifar.DEFAULTS),
             **{arch: tuple(transfer.DEFAULTS) for arch in transfer.BACKBONES}}


def build_model(config: Mapping[str, Any], weights_dir: str | os.PathLike | None = None) -> nn.Module:
    """Model for ``config``: input (B, 3, H, W) normalised float -> logits (B, num_classes).

    ``weights_dir``: the ImageNet weights directory (``dermascreen.models.weights``), needed by
    ``weights: imagenet`` only.
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"model config must be a mapping, got {type(config).__name__}")
    arch = config.get("arch")
    if arch not in ARCHS:
        raise ValueError(f"model config arch={arch!r}: allowed values are {', '.join(ARCHS)}")
    unfreeze = parse_unfreeze(config.get("unfreeze", "all"))
    supervision = config.get("supervision", "binary")
    if supervision not in SUPERVISIONS:
        raise ValueError(f"model config supervision={supervision!r}: allowed values are {', '.join(SUPERVISIONS)}")
    config = {key: value for key, value in config.items() if key != "supervision"}
    if supervision == "labels":
        if config.get("num_classes", 2) != 2:
            raise ValueError(f"model config supervision=labels makes a 2-class model from a 7-class network; "
                             f"num_classes must be 2, got {config['num_classes']!r}")
        config["num_classes"] = num_labels()
    wrap = SummedClasses if supervision == "labels" else (lambda net: net)
    if arch == "vit":
        from dermascreen.models.vit import build_vit  # the pretraining engineer's module, heavy imports

        model = wrap(build_vit(config))
    else:
        model = _build_own(arch, config, wrap, weights_dir)
    set_trainable(model, unfreeze)
    return model


def _build_own(arch: str, config: Mapping[str, Any], wrap, weights_dir: str | os.PathLike | None) -> nn.Module:
    allowed = COMMON_KEYS + ARCH_KEYS[arch]
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise ValueError(f"model config for arch {arch!r} has unknown key(s) {', '.join(map(repr, unknown))}; "
                         f"allowed keys are {', '.join(allowed)}")
    num_classes = config.get("num_classes", 2)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"model config num_classes must be an integer >= 2, got {num_classes!r}")
    weights = config.get("weights") or "none"
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"model config weights must be none, imagenet or a checkpoint path, got {weights!r}")
    weights = str(weights)
    if arch == "cnn":
        if weights == "imagenet":
            raise ValueError("model config weights=imagenet: arch 'cnn' has no pretrained weights; "
                             "allowed values are none or a checkpoint path")
        model = cnn.build_cnn({**config, "num_classes": num_classes})
    elif arch == "resnet_cifar":
        if weights == "imagenet":
            raise ValueError("model config weights=imagenet: arch 'resnet_cifar' has no pretrained weights; "
                             "allowed values are none or a checkpoint path")
        model = resnet_cifar.build_resnet_cifar({**config, "num_classes": num_classes})
    else:
        model = transfer.build_transfer({**config, "num_classes": num_classes, "weights": weights}, weights_dir)
    model = wrap(model)  # before loading: a checkpoint holds the whole (wrapped) model
    if weights not in ("none", "imagenet"):
        load_weights(model, weights, arch)
    return model


def load_weights(model: nn.Module, path: str | os.PathLike, arch: str) -> nn.Module:
    """Load a checkpoint into ``model``: ``{"config", "state_dict", ...}`` or a bare state dict.

    The state dict covers the whole model, or only its backbone (keys without the
    ``backbone.`` prefix, e.g. an encoder saved alone). Mismatches raise a ValueError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model weights file not found (weights must be none, "
                                f"imagenet or the path of a checkpoint)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {error})") from error
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict or a dict with 'state_dict', got {type(checkpoint).__name__}")
    saved_config = checkpoint.get("config")
    saved_arch = saved_config.get("arch") if isinstance(saved_config, dict) else None
    if saved_arch not in (None, arch):
        raise ValueError(f"{path}: checkpoint is for arch {saved_arch!r}, the model config says {arch!r}")
    backbone = backbone_of(model)
    target = backbone if set(state) == set(backbone.state_dict()) else model
    _check_keys(path, state, target.state_dict())
    target.load_state_dict(state)
    return model


def _check_keys(path: Path, state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(key for key in set(state) & set(expected) if state[key].shape != expected[key].shape)
    if missing or unexpected or wrong_shape:
        def first(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

        problems = [f"{label} {len(keys)}: {first(keys)}" for label, keys in
                    (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)) if keys]
        raise ValueError(f"{path}: weights do not match the model config ({'; '.join(problems)})")
