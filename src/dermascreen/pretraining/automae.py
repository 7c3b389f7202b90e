"""AutoMAE (Chen et al. 2023, "Improving Masked Autoencoders by Learning Where to Mask").

A mask generator scores every patch from a *frozen* pretrained encoder's view of the image
(here this pipeline's MAE encoder: its last-block [CLS] attention per head and its patch
tokens). Gumbel-softmax top-k turns the scores into a hard mask of exactly M patches whose
straight-through value carries the soft relaxation's gradient, so the reconstruction loss
reaches the generator. The generator is trained adversarially to the MAE: it *raises* the
reconstruction error of the patches it masks (information-dense patches), while a
discriminator, trained to tell its masks from a prior of random rectangular masks, keeps the
masks plausible and the task learnable (the paper's balance between information gain and
training difficulty). The MAE itself minimises the usual masked MSE on the generated masks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dermascreen.models.vit import ViTEncoder
from dermascreen.pretraining.engine import PretrainerBase, make_optimizer
from dermascreen.pretraining.mae import MaskedAutoencoder, masked_mean


def gumbel_topk_mask(logits: torch.Tensor, k: int, tau: float,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """logits (B, N) -> (straight-through mask, perturbed scores), both (B, N).

    The forward value is the hard top-``k`` of logits + Gumbel noise (1 = masked); the gradient
    is that of ``k * softmax(perturbed / tau)`` clamped to 1, the relaxed top-k.
    """
    uniform = torch.rand(logits.shape, generator=generator).to(logits.device, non_blocking=True)
    uniform = uniform.clamp_(1e-9, 1 - 1e-9)
    perturbed = logits - torch.log(-torch.log(uniform))
    soft = (k * F.softmax(perturbed / tau, dim=-1)).clamp(max=1.0)
    hard = torch.zeros_like(logits).scatter_(1, torch.topk(perturbed, k, dim=1).indices, 1.0)
    return hard + soft - soft.detach(), perturbed.detach()


def rectangle_prior_masks(batch: int, grid: int, k: int, rectangles: int = 3,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, grid*grid) masks of exactly ``k`` patches drawn from unions of random rectangles.

    Each patch scores the number of rectangles covering it (+ noise below 1 to break ties), and
    the top ``k`` are masked, so the masks are blocky like the rectangles but have the same size
    as the generator's (the discriminator cannot win by counting).
    """
    corners = torch.randint(0, grid, (batch, rectangles, 2), generator=generator)
    sizes = torch.randint(grid // 4 + 1, grid + 1, (batch, rectangles, 2), generator=generator)
    axis = torch.arange(grid)
    rows = (axis >= corners[..., :1]) & (axis < corners[..., :1] + sizes[..., :1])  # (B, R, grid)
    cols = (axis >= corners[..., 1:]) & (axis < corners[..., 1:] + sizes[..., 1:])
    cover = (rows[..., :, None] & cols[..., None, :]).sum(1).flatten(1).float()  # (B, grid*grid)
    scores = cover + 0.5 * torch.rand(cover.shape, generator=generator)
    return torch.zeros_like(cover).scatter_(1, torch.topk(scores, k, dim=1).indices, 1.0)


class MaskGenerator(nn.Module):
    """Per-patch mask logits (B, N) from a frozen encoder's patch tokens and [CLS] attention."""

    def __init__(self, embed_dim: int, num_heads: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(embed_dim + num_heads), nn.Linear(embed_dim + num_heads, hidden),
                                 nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, tokens: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """tokens (B, N, D), attention (B, heads, N) -> logits (B, N)."""
        n = tokens.shape[1]
        attention = attention.transpose(1, 2) * n  # (B, N, heads); x N so uniform attention is 1
        return self.net(torch.cat([tokens, attention], dim=-1)).squeeze(-1)


class MaskDiscriminator(nn.Module):
    """Logit (B,) that a mask (B, N) comes from the rectangle prior rather than the generator."""

    def __init__(self, num_patches: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(num_patches, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        return self.net(masks).squeeze(-1)


class AutoMAEPretrainer(PretrainerBase):
    """MAE + mask generator + discriminator, each with its own optimiser, one step per batch."""

    def __init__(self, mae: MaskedAutoencoder, lr: float, weight_decay: float, seed: int, precision: str = "fp32",
                 *, source_encoder: ViTEncoder, tau: float = 0.5, lambda_adversarial: float = 0.1,
                 generator_lr: float = 1e-4, rectangles: int = 3):
        self.mae, self.precision = mae, precision
        self.source = source_encoder.eval().requires_grad_(False)
        device = mae.encoder.cls_token.device
        self.mask_generator = MaskGenerator(source_encoder.embed_dim,
                                            source_encoder.blocks[0].attn.num_heads).to(device)
        self.discriminator = MaskDiscriminator(mae.num_patches).to(device)
        self.optimizers = [make_optimizer(mae, lr, weight_decay),
                           make_optimizer(self.mask_generator, generator_lr, 0.0),
                           make_optimizer(self.discriminator, generator_lr, 0.0)]
        self.tau, self.lambda_adversarial, self.rectangles = tau, lambda_adversarial, rectangles
        self.generator = torch.Generator().manual_seed(seed)

    def trained(self) -> dict[str, nn.Module]:
        return {"mae": self.mae, "mask_generator": self.mask_generator, "discriminator": self.discriminator}

    def frozen(self) -> dict[str, nn.Module]:
        return {"source": self.source}

    def generated_mask(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images -> (straight-through mask (B, N), scores (B, N) whose top M it masks).

        The frozen encoder runs once: its tokens and last-block [CLS] attention come from one pass.
        """
        with torch.no_grad(), self.autocast():
            tokens, attention = self.source.forward_with_cls_attention(images)
        logits = self.mask_generator(tokens[:, 1:].float(), attention.float())  # small: fp32
        return gumbel_topk_mask(logits, self.mae.n_masked, self.tau, self.generator)

    def mask_scores(self, images: torch.Tensor, progress: float) -> torch.Tensor:
        return self.generated_mask(images)[1]

    def prior_masks(self, batch: int, device: torch.device) -> torch.Tensor:
        grid = int(self.mae.num_patches ** 0.5)
        return rectangle_prior_masks(batch, grid, self.mae.n_masked, self.rectangles, self.generator).to(
            device, non_blocking=True)

    def losses(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The three players' losses on one batch (each only reaches its own player's parameters)."""
        mask_st, scores = self.generated_mask(images)
        with self.autocast():
            out = self.mae(images, scores)  # out.mask equals mask_st's forward value
        errors = out.errors.float()
        reconstruction = masked_mean(errors, out.mask)
        # The generator gains where the MAE's error is high: gradient only through mask_st.
        generator_gain = masked_mean(errors.detach(), mask_st)
        real = torch.ones(len(images), device=images.device)
        fool = F.binary_cross_entropy_with_logits(self.discriminator(mask_st), real)
        d_real = self.discriminator(self.prior_masks(len(images), images.device))
        d_fake = self.discriminator(mask_st.detach())
        discriminator = (F.binary_cross_entropy_with_logits(d_real, real)
                         + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(real)))
        return {"reconstruction": reconstruction, "generator": -generator_gain + self.lambda_adversarial * fool,
                "discriminator": discriminator}

    def step(self, images: torch.Tensor, progress: float) -> dict[str, torch.Tensor]:
        losses = self.losses(images)
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        # The generator loss must not train the discriminator: its gradients are cleared after.
        losses["generator"].backward()
        self.discriminator.zero_grad(set_to_none=True)
        (losses["reconstruction"] + losses["discriminator"]).backward()
        for optimizer in self.optimizers:
            optimizer.step()
        self.steps += 1
        return {"loss": losses["reconstruction"].detach(), "generator": losses["generator"].detach(),
                "discriminator": losses["discriminator"].detach()}
