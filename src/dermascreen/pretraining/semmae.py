"""SemMAE (Li et al. 2022, ucasligang/SemMAE): masking guided by semantic parts.

SemMAE learns part masks with a part-learning network on iBOT features. Here the parts come
from the patch features of a pretrained ViT encoder (this pipeline's own MAE run): k-means on
each image's L2-normalised patch tokens gives K parts per image. Masking then moves from
*intra-part* (a share of the patches of every part is masked, so every part stays partly
visible) to *inter-part* (whole parts are masked, so they must be inferred from the others)
along the official schedule lambda(t) = 1 - (t/T)^2, the fraction of the masking budget spent
intra-part.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dermascreen.models.vit import ViTEncoder
from dermascreen.pretraining.mae import MAEPretrainer, MaskedAutoencoder


def intra_part_weight(progress: float) -> float:
    """lambda(t) = 1 - (t/T)^2 with ``progress`` = t/T in [0, 1]."""
    return 1.0 - min(max(progress, 0.0), 1.0) ** 2


@torch.no_grad()
def kmeans_parts(features: torch.Tensor, k: int, iterations: int = 10) -> torch.Tensor:
    """features (B, N, D) -> part index (B, N) in [0, k), per image, by cosine k-means.

    Centres start at ``k`` evenly spaced patches (deterministic); an empty part keeps its centre.
    """
    b, n, _ = features.shape
    x = F.normalize(features, dim=-1)
    start = torch.linspace(0, n - 1, k, device=x.device).round().long()
    centres = x[:, start].clone()  # (B, k, D)
    for _ in range(iterations):
        parts = (x @ centres.transpose(1, 2)).argmax(-1)  # (B, N)
        one_hot = F.one_hot(parts, k).to(x.dtype)  # (B, N, k)
        sums = one_hot.transpose(1, 2) @ x  # (B, k, D)
        counts = one_hot.sum(1)[..., None]  # (B, k, 1)
        centres = torch.where(counts > 0, F.normalize(sums, dim=-1), centres)
    return (x @ centres.transpose(1, 2)).argmax(-1)


def semantic_scores(parts: torch.Tensor, num_parts: int, intra_weight: float, n_masked: int,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """parts (B, N) in [0, ``num_parts``) -> scores (B, N) whose top ``n_masked`` form the SemMAE mask.

    ``round(intra_weight * n_masked)`` patches are masked intra-part: each patch's score is its
    random rank within its own part as a fraction of the part's size, so the top of it takes the
    same share of every part. The rest of the budget masks whole parts, in a random order of
    parts per image.
    """
    b, n = parts.shape
    k = num_parts  # given, not read from ``parts``: reading a device tensor waits for the device
    noise = torch.rand(b, n, generator=generator).to(parts.device, non_blocking=True)
    same = parts[:, :, None] == parts[:, None, :]  # (B, N, N)
    below = (noise[:, None, :] < noise[:, :, None]) & same
    quantile = below.sum(-1).float() / same.sum(-1).float()  # rank within part / part size, in [0, 1)
    n_intra = round(intra_weight * n_masked)
    intra = torch.zeros(b, n, dtype=torch.bool, device=parts.device)
    if n_intra:
        intra.scatter_(1, torch.topk(quantile + 1e-3 * noise, n_intra, dim=1).indices, True)
    part_order = torch.argsort(torch.rand(b, k, generator=generator), dim=1).to(parts.device, non_blocking=True).float()
    inter = torch.gather(part_order, 1, parts) + noise  # whole parts outrank each other
    return torch.where(intra, torch.full_like(inter, float(k + 1)), inter)


class SemMAEPretrainer(MAEPretrainer):
    """MAE whose masks follow K semantic parts from a frozen pretrained encoder."""

    def __init__(self, mae: MaskedAutoencoder, lr: float, weight_decay: float, seed: int, precision: str = "fp32",
                 *, part_encoder: ViTEncoder, num_parts: int = 4, kmeans_iterations: int = 10):
        super().__init__(mae, lr, weight_decay, seed, precision)
        self.part_encoder = part_encoder.eval().requires_grad_(False)
        self.num_parts, self.kmeans_iterations = num_parts, kmeans_iterations

    def frozen(self) -> dict[str, torch.nn.Module]:
        return {"part_encoder": self.part_encoder}

    @torch.no_grad()
    def parts(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) -> part index (B, N) from the frozen encoder's patch tokens."""
        with self.autocast():
            features = self.part_encoder(images)[:, 1:]
        return kmeans_parts(features.float(), self.num_parts, self.kmeans_iterations)  # k-means in fp32

    def mask_scores(self, images: torch.Tensor, progress: float) -> torch.Tensor:
        return semantic_scores(self.parts(images), self.num_parts, intra_part_weight(progress), self.mae.n_masked,
                               self.generator)
