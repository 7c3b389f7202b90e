"""Build any method's ``Pretrainer`` from configuration (the only place that knows them all)."""

from __future__ import annotations

from typing import Any

import numpy as np

from dermascreen.models.vit import ViTEncoder, encoder_config
from dermascreen.pretraining.augment import Augment, resolve_kind
from dermascreen.pretraining.automae import AutoMAEPretrainer
from dermascreen.pretraining.engine import Pretrainer
from dermascreen.pretraining.mae import MAEPretrainer, MaskedAutoencoder
from dermascreen.pretraining.mlo_mae import MLOMAEPretrainer
from dermascreen.pretraining.semmae import SemMAEPretrainer
from dermascreen.pretraining.umae import UMAEPretrainer

METHODS = ("mae", "umae", "semmae", "automae", "mlo_mae")
# Methods whose masks come from a pretrained encoder (this pipeline's MAE run).
GUIDED = {"semmae": SemMAEPretrainer, "automae": AutoMAEPretrainer}


def build_autoencoder(encoder: dict[str, Any], decoder: dict[str, Any], mask_ratio: float,
                      norm_pix_loss: bool = True) -> MaskedAutoencoder:
    """A fresh ``MaskedAutoencoder`` from the encoder and decoder parameter sections."""
    return MaskedAutoencoder(ViTEncoder(**encoder_config(encoder)), decoder_dim=decoder["dim"],
                             decoder_depth=decoder["depth"], decoder_heads=decoder["heads"],
                             mask_ratio=mask_ratio, norm_pix_loss=norm_pix_loss)


def build_pretrainer(method: str, mae: MaskedAutoencoder, pretrain: dict[str, Any], options: dict[str, Any],
                     train_set: dict[str, np.ndarray] | None = None,
                     normalization: dict[str, list[float]] | None = None,
                     source_encoder: ViTEncoder | None = None) -> Pretrainer:
    """The pretrainer of ``method`` around ``mae``; ``options`` are the method's own keys.

    SemMAE and AutoMAE need ``source_encoder``; MLO-MAE needs the labelled ``train_set`` and
    ``normalization`` for its upper levels. Every module lives on ``mae``'s device;
    ``pretrain["precision"]`` (resolved: ``fp32`` or ``bf16``, default fp32) is its forwards' precision;
    ``pretrain["augment"]`` (``official`` or ``none``, default none) its batches' augmentation
    (``pretraining.augment``).
    """
    common = {"lr": pretrain["lr"], "weight_decay": pretrain["weight_decay"], "seed": pretrain["seed"],
              "precision": pretrain.get("precision", "fp32")}
    trainer = _pretrainer(method, mae, common, options, train_set, normalization, source_encoder)
    kind = resolve_kind(pretrain.get("augment", "none"), method)
    if kind != "none":
        if normalization is None:
            raise ValueError("pretraining augmentation needs the data's normalization (its black fill)")
        trainer.augment = Augment(kind, mae.encoder.img_size, normalization)
    return trainer


def _pretrainer(method: str, mae: MaskedAutoencoder, common: dict[str, Any], options: dict[str, Any],
                train_set: dict[str, np.ndarray] | None, normalization: dict[str, list[float]] | None,
                source_encoder: ViTEncoder | None) -> Pretrainer:
    if method == "mae":
        return MAEPretrainer(mae, **common)
    if method == "umae":
        return UMAEPretrainer(mae, **common, **options)
    if method in GUIDED:
        if source_encoder is None:
            raise ValueError(f"{method} needs a pretrained source encoder (the pipeline's MAE encoder)")
        key = "part_encoder" if method == "semmae" else "source_encoder"
        return GUIDED[method](mae, **common, **{key: source_encoder}, **options)
    if method == "mlo_mae":
        if train_set is None or normalization is None:
            raise ValueError("mlo_mae needs the labelled train_set and normalization")
        return MLOMAEPretrainer(mae, **common, images=train_set["images"], labels=train_set["labels"],
                                normalization=normalization, **options)
    raise ValueError(f"unknown pretraining method {method!r}; expected one of {METHODS}")
