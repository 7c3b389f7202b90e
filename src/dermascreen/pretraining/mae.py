"""Masked autoencoder (He et al. 2022), following facebookresearch/mae ``models_mae.py``.

The encoder sees only the visible patches; a light decoder receives the encoded visible tokens
plus a shared learned mask token at every masked position and predicts the pixels of every
patch; the loss is the MSE on masked patches against per-patch normalised targets
(``norm_pix_loss``). Every masking method of this package decides *which* patches to mask by a
score per patch: the ``num_masked`` highest-scored patches are masked. Random masking (MAE,
U-MAE) scores with uniform noise, which is MAE's ``argsort(noise)`` shuffle.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.layers import build_sincos2d_pos_embed
from timm.models.vision_transformer import Block
from torch import nn

from dermascreen.models.vit import ViTEncoder, resize_to
from dermascreen.pretraining.engine import PretrainerBase, make_optimizer


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, N, patch*patch*3), patches row-major as in MAE."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(patches: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, N, patch*patch*3) -> (B, 3, H, W)."""
    b, n, _ = patches.shape
    g = int(n ** 0.5)
    x = patches.reshape(b, g, g, patch, patch, 3)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(b, 3, g * patch, g * patch)


def num_masked(num_patches: int, mask_ratio: float) -> int:
    """How many patches a ratio masks (MAE keeps ``int(N * (1 - ratio))``)."""
    if not 0.0 < mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must lie in (0, 1), got {mask_ratio}")
    return num_patches - int(num_patches * (1 - mask_ratio))


def random_scores(batch: int, num_patches: int, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Uniform noise (B, N): masking its top entries is MAE's random masking."""
    return torch.rand(batch, num_patches, generator=generator, device=device)


def mask_from_scores(scores: torch.Tensor, n_masked: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores (B, N) -> ids_keep (B, N-M), ids_restore (B, N), mask (B, N) with 1 = masked.

    The M highest-scored patches are masked; ties break by index (argsort is stable).
    """
    ids_shuffle = torch.argsort(scores, dim=1, stable=True)  # ascending: kept patches first
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    n_keep = scores.shape[1] - n_masked
    mask = torch.ones_like(scores)
    mask[:, :n_keep] = 0
    return ids_shuffle[:, :n_keep], ids_restore, torch.gather(mask, 1, ids_restore)


def patch_errors(images: torch.Tensor, pred: torch.Tensor, patch: int, norm_pix: bool = True) -> torch.Tensor:
    """Per-patch MSE (B, N) of ``pred`` against the (per-patch normalised) pixels of ``images``."""
    target = patchify(images, patch)
    if norm_pix:
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
    return ((pred - target) ** 2).mean(dim=-1)


def masked_mean(errors: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """MAE's loss: the mean of ``errors`` over masked patches, optionally weighted per patch."""
    weighted = errors * mask if weights is None else errors * mask * weights
    return weighted.sum() / mask.sum()


@dataclass
class MAEOutput:
    latent: torch.Tensor  # (B, 1+K, D) encoder tokens of the visible patches, [CLS] first
    pred: torch.Tensor  # (B, N, p*p*3) decoder prediction for every patch
    mask: torch.Tensor  # (B, N) 1 = masked
    errors: torch.Tensor  # (B, N) per-patch reconstruction MSE


class MAEDecoder(nn.Module):
    """Light transformer decoder: visible tokens + mask tokens -> pixels of every patch."""

    def __init__(self, num_patches: int, embed_dim: int, patch: int, dim: int = 128, depth: int = 2,
                 num_heads: int = 4, mlp_ratio: float = 4.0):
        super().__init__()
        grid = int(num_patches ** 0.5)
        self.embed = nn.Linear(embed_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        pos = build_sincos2d_pos_embed([grid, grid], dim=dim)
        self.register_buffer("pos_embed", torch.cat([torch.zeros(1, dim), pos])[None], persistent=False)
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio, qkv_bias=True) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.pred = nn.Linear(dim, patch * patch * 3)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """latent (B, 1+K, D), ids_restore (B, N) -> (B, N, p*p*3)."""
        x = self.embed(latent)
        n_fill = ids_restore.shape[1] + 1 - x.shape[1]
        patches = torch.cat([x[:, 1:], self.mask_token.expand(x.shape[0], n_fill, -1)], dim=1)
        patches = torch.gather(patches, 1, ids_restore[..., None].expand(-1, -1, x.shape[-1]))  # unshuffle
        x = torch.cat([x[:, :1], patches], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.pred(self.norm(x))[:, 1:]


class MaskedAutoencoder(nn.Module):
    """ViT encoder on visible patches + ``MAEDecoder``; masks chosen by per-patch scores."""

    def __init__(self, encoder: ViTEncoder, decoder_dim: int = 128, decoder_depth: int = 2,
                 decoder_heads: int = 4, mask_ratio: float = 0.75, norm_pix_loss: bool = True):
        super().__init__()
        self.encoder = encoder
        self.decoder = MAEDecoder(encoder.num_patches, encoder.embed_dim, encoder.patch_size,
                                  decoder_dim, decoder_depth, decoder_heads)
        self.n_masked = num_masked(encoder.num_patches, mask_ratio)
        self.norm_pix_loss = norm_pix_loss

    @property
    def num_patches(self) -> int:
        return self.encoder.num_patches

    def forward(self, images: torch.Tensor, scores: torch.Tensor) -> MAEOutput:
        """images (B, 3, H, W) normalised, scores (B, N) -> ``MAEOutput``."""
        images = resize_to(images, self.encoder.img_size)
        ids_keep, ids_restore, mask = mask_from_scores(scores, self.n_masked)
        latent = self.encoder(images, ids_keep)
        pred = self.decoder(latent, ids_restore)
        errors = patch_errors(images, pred, self.encoder.patch_size, self.norm_pix_loss)
        return MAEOutput(latent, pred, mask, errors)

    def reconstruct(self, images: torch.Tensor, out: MAEOutput) -> torch.Tensor:
        """Pixels (B, 3, img, img) of the prediction, de-normalised per patch when targets were."""
        pred = out.pred
        if self.norm_pix_loss:
            target = patchify(resize_to(images, self.encoder.img_size), self.encoder.patch_size)
            pred = pred * (target.var(dim=-1, keepdim=True) + 1e-6) ** 0.5 + target.mean(dim=-1, keepdim=True)
        return unpatchify(pred, self.encoder.patch_size)


class MAEPretrainer(PretrainerBase):
    """MAE's training step: random masking, masked MSE, one AdamW step."""

    def __init__(self, mae: MaskedAutoencoder, lr: float, weight_decay: float, seed: int, precision: str = "fp32"):
        self.mae, self.precision = mae, precision
        self.optimizers = [make_optimizer(mae, lr, weight_decay)]
        self.generator = torch.Generator().manual_seed(seed)

    def mask_scores(self, images: torch.Tensor, progress: float) -> torch.Tensor:
        """Per-patch scores (B, N) at ``progress`` of the run; the method masks the highest."""
        return random_scores(len(images), self.mae.num_patches, self.generator).to(images.device,
                                                                                  non_blocking=True)

    def loss(self, out: MAEOutput) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = masked_mean(out.errors.float(), out.mask)
        return loss, {"loss": loss.detach()}

    def step(self, images: torch.Tensor, progress: float) -> dict[str, torch.Tensor]:
        scores = self.mask_scores(images, progress)
        with self.autocast():
            out = self.mae(images, scores)
        loss, logged = self.loss(out)
        optimizer = self.optimizers[0]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        self.steps += 1
        return logged
