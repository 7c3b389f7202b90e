"""U-MAE (Zhang, Wang & Wang 2022, zhangq327/U-MAE): MAE loss + lambda * uniformity term.

The uniformity term is the official ``uniformity_loss``: the mean squared cosine similarity of
the L2-normalised features over all pairs of the batch (diagonal included, as in the official
code), with lambda = 0.01 (``--lamb 0.01`` in its ``pretrain.sh``). It penalises the
dimensional collapse the paper proves MAE is prone to. The feature is the encoder's [CLS]
token over the visible patches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dermascreen.pretraining.mae import MAEOutput, MAEPretrainer, MaskedAutoencoder, masked_mean


def uniformity_loss(features: torch.Tensor) -> torch.Tensor:
    """features (B, D) -> mean over (i, j) of cos(f_i, f_j)^2."""
    features = F.normalize(features, dim=1)
    return (features @ features.T).pow(2).mean()


class UMAEPretrainer(MAEPretrainer):
    """MAE with random masking whose loss adds ``lambda_uniformity`` * uniformity of [CLS] features."""

    def __init__(self, mae: MaskedAutoencoder, lr: float, weight_decay: float, seed: int, precision: str = "fp32",
                 lambda_uniformity: float = 0.01):
        super().__init__(mae, lr, weight_decay, seed, precision)
        self.lambda_uniformity = lambda_uniformity

    def loss(self, out: MAEOutput) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        reconstruction = masked_mean(out.errors.float(), out.mask)
        uniformity = uniformity_loss(out.latent[:, 0].float())
        loss = reconstruction + self.lambda_uniformity * uniformity
        return loss, {"loss": loss.detach(), "reconstruction": reconstruction.detach(),
                      "uniformity": uniformity.detach()}
