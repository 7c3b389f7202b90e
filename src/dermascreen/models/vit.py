"""A small Vision Transformer for 28x28 DermaMNIST, shared by MAE-style pretraining and classification.

The model resizes its input images (28x28, or the 64/128/224 of the larger MedMNIST files) to
``img_size`` (32 by default, bilinear) so that patch 4 tiles them into an 8x8 grid, as the seed
experiment did ("resized from 28x28").
Position embeddings are fixed 2D sin-cos with a zero slot for the [CLS] token, as in
facebookresearch/mae. The encoder can run on a subset of patches (``ids_keep``), which is what
MAE-style pretraining needs; the classifier mean-pools the patch tokens (MAE's fine-tuning
default, ``global_pool``) into a linear head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import build_sincos2d_pos_embed
from timm.models.vision_transformer import Block
from torch import nn

from dermascreen.models.keras_layers import KerasLayer, vit_layers

# Architecture keys of an encoder and their defaults (ViT-Tiny width at patch 4 on 32x32).
ENCODER_DEFAULTS: dict[str, Any] = {
    "img_size": 32, "patch_size": 4, "embed_dim": 192, "depth": 6, "num_heads": 3,
    "mlp_ratio": 4.0, "drop_path": 0.0,
}
ENCODER_KIND = "vit_encoder"
# Every key a vit model config may hold (the factory's common keys, the encoder's, the head's, and
# image_size: the side of the data's images, which the encoder resizes to img_size; kept in the
# config so that inference feeds images of that side, as training did).
VIT_KEYS = ("arch", "name", "num_classes", "weights", "unfreeze", "image_size", *ENCODER_DEFAULTS, "dropout")


def encoder_config(config: dict[str, Any]) -> dict[str, Any]:
    """The encoder's architecture keys from ``config``, defaults filled in."""
    return {key: config.get(key, default) for key, default in ENCODER_DEFAULTS.items()}


def resize_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, size, size), bilinear; identity when already that size.

    Shrinking (64, 128 or 224 to 32) is antialiased: plain bilinear would sample 4 of every
    7x7 pixels at 224 and alias.
    """
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=images.shape[-1] > size)


class ViTEncoder(nn.Module):
    """Patch embedding + [CLS] + sin-cos positions + pre-norm transformer blocks + final norm."""

    def __init__(self, img_size: int = 32, patch_size: int = 4, embed_dim: int = 192, depth: int = 6,
                 num_heads: int = 3, mlp_ratio: float = 4.0, drop_path: float = 0.0):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        if embed_dim % 4:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by 4 for 2D sin-cos positions")
        self.img_size, self.patch_size, self.embed_dim = img_size, patch_size, embed_dim
        self.grid = img_size // patch_size
        self.num_patches = self.grid ** 2
        self.patch_embed = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        pos = build_sincos2d_pos_embed([self.grid, self.grid], dim=embed_dim)  # (N, D)
        self.register_buffer("pos_embed", torch.cat([torch.zeros(1, embed_dim), pos])[None],
                             persistent=False)  # (1, 1+N, D), fixed
        rates = torch.linspace(0, drop_path, depth).tolist()
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, drop_path=rate) for rate in rates)
        self.norm = nn.LayerNorm(embed_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        # As in MAE: xavier on the patch projection (seen as a linear layer) and on linears.
        nn.init.xavier_uniform_(self.patch_embed.weight.view(self.embed_dim, -1))
        nn.init.normal_(self.cls_token, std=0.02)
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def patch_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, N, D) patch embeddings with their positions."""
        x = self.patch_embed(resize_to(images, self.img_size))  # (B, D, g, g)
        return x.flatten(2).transpose(1, 2) + self.pos_embed[:, 1:]

    def forward(self, images: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) [, ids_keep (B, K)] -> (B, 1+K, D) normed tokens, [CLS] first.

        ``ids_keep`` selects the visible patches (MAE); ``None`` keeps all N.
        """
        x = self.patch_tokens(images)
        if ids_keep is not None:
            x = torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, x.shape[-1]))
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward_with_cls_attention(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) -> (``forward``'s tokens (B, 1+N, D), the last block's attention from [CLS] to
        each patch (B, heads, N)), in one pass through the blocks."""
        x = self.patch_tokens(images)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for block in self.blocks[:-1]:
            x = block(x)
        last = self.blocks[-1]
        attn = last.attn
        qkv = attn.qkv(last.norm1(x)).reshape(x.shape[0], x.shape[1], 3, attn.num_heads, -1)
        q, k, _ = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, 1+N, hd)
        q, k = attn.q_norm(q), attn.k_norm(k)
        weights = (q[:, :, :1] @ k.transpose(-2, -1) * attn.scale).softmax(-1)  # (B, heads, 1, 1+N)
        return self.norm(last(x)), weights[:, :, 0, 1:]


class ViTClassifier(nn.Module):
    """Encoder + mean-pooled patch tokens + linear head: logits (B, num_classes)."""

    def __init__(self, encoder: ViTEncoder, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.embed_dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=2e-5)  # MAE fine-tuning's head init
        nn.init.zeros_(self.head.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder(images)  # (B, 1+N, D)
        return self.head(self.dropout(tokens[:, 1:].mean(dim=1)))

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's layer groups (layer-wise lr decay): the embeddings, one per block (the final norm
        with the last, as in timm's ViT); the head, matched by none, is the top layer."""
        return {"stem": r"^encoder\.(?:cls_token|patch_embed)",
                "blocks": [(r"^encoder\.blocks\.(\d+)", None), (r"^encoder\.norm", (99999,))]}

    def keras_layers(self) -> list[KerasLayer]:
        """The encoder's layers as Keras' ViT example has them (``unfreeze`` counts them)."""
        return vit_layers(self.encoder.blocks, "encoder.")


def encoder_checkpoint(encoder: ViTEncoder, config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The artifact pretraining writes: ``{"kind", "config", "state_dict", **extra}``."""
    state = {key: value.detach().cpu().clone() for key, value in encoder.state_dict().items()}
    return {"kind": ENCODER_KIND, "config": encoder_config(config), "state_dict": state, **extra}


def load_encoder_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and check an encoder checkpoint written by the pretraining pipeline."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ViT encoder checkpoint not found (run the pretraining pipeline)")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("kind") != ENCODER_KIND:
        raise ValueError(f"{path}: not a ViT encoder checkpoint (expected kind {ENCODER_KIND!r})")
    return checkpoint


def encoder_from_checkpoint(checkpoint: dict[str, Any], source: str = "checkpoint") -> ViTEncoder:
    """Rebuild an encoder from its checkpoint and load its weights."""
    encoder = ViTEncoder(**encoder_config(checkpoint["config"]))
    try:
        encoder.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise ValueError(f"{source}: encoder weights do not fit its config ({error})") from error
    return encoder


def _merged_architecture(config: dict[str, Any], checkpoint: dict[str, Any], source: str) -> dict[str, Any]:
    # The checkpoint fixes the architecture; a model config may repeat it but not contradict it.
    architecture = encoder_config(checkpoint["config"])
    for key in ("img_size", "patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio"):
        if key in config and config[key] != architecture[key]:
            raise ValueError(f"{source}: model config says {key}={config[key]!r}, "
                             f"the encoder was pretrained with {architecture[key]!r}")
    architecture["drop_path"] = config.get("drop_path", architecture["drop_path"])
    return architecture


def build_vit(config: dict[str, Any]) -> ViTClassifier:
    """ViT classifier from a model config.

    Keys: ``num_classes`` (default 2), ``weights`` (``none``, the path of an encoder checkpoint
    from the pretraining pipeline, e.g. ``data/06_models/pretraining/mae/encoder.pt``, or that
    checkpoint already loaded), the
    architecture keys of ``ENCODER_DEFAULTS`` (taken from the checkpoint when ``weights`` is a
    path), and ``dropout`` before the head.
    """
    unknown = sorted(set(config) - set(VIT_KEYS))
    if unknown:
        raise ValueError(f"model config for arch 'vit' has unknown key(s) {', '.join(map(repr, unknown))}; "
                         f"allowed keys are {', '.join(VIT_KEYS)}")
    weights = config.get("weights") or "none"
    if isinstance(weights, dict):  # an encoder checkpoint already loaded (a Kedro dataset)
        checkpoint, source = weights, "encoder checkpoint"
    elif str(weights) == "none":
        checkpoint = None
    elif str(weights) == "imagenet":
        raise ValueError("vit has no imagenet weights; use none or a pretraining encoder checkpoint path")
    else:
        checkpoint, source = load_encoder_checkpoint(weights), str(weights)
    if checkpoint is None:
        encoder = ViTEncoder(**encoder_config(config))
    else:
        checkpoint = {**checkpoint, "config": _merged_architecture(config, checkpoint, source)}
        encoder = encoder_from_checkpoint(checkpoint, source=source)
    return ViTClassifier(encoder, int(config.get("num_classes", 2)), float(config.get("dropout", 0.0)))
