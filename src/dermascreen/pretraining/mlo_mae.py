"""MLO-MAE (Guo et al. 2024, Alexiland/MLO-MAE): masking learned from the downstream task.

Three levels, as in the official code (Betty, unroll steps 2/1/1):

1. The MAE (encoder + decoder, theta) minimises the reconstruction loss of the patches a
   masking network (phi) rates highest, each weighted by its masking probability, so the
   level-1 solution depends on phi. Two steps per round.
2. A linear classification head (psi) on the encoder's frozen, mean-pooled features minimises
   the cross-entropy on a training portion. One step per round.
3. The masking network minimises the same cross-entropy on a held-out portion through the
   hypergradient of level 1's solution with respect to phi (``hypergrad.darts_hypergradient``:
   one unrolled step + finite differences, Betty's ``darts``). One step per round.

Both labelled portions are disjoint, stratified parts of the *train* split: validation stays
untouched for fine-tuning's model and epoch selection, and test for the final report.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dermascreen.models.vit import ViTEncoder
from dermascreen.pretraining.engine import PretrainerBase, make_optimizer
from dermascreen.pretraining.hypergrad import darts_hypergradient
from dermascreen.pretraining.mae import MaskedAutoencoder, masked_mean
from dermascreen.training.data import normalization_tensors, to_model_input


class MaskingNetwork(nn.Module):
    """A small ViT giving each patch a masking probability: images -> (B, N) in (0, 1)."""

    def __init__(self, img_size: int, patch_size: int, embed_dim: int = 64, depth: int = 2, num_heads: int = 2):
        super().__init__()
        self.encoder = ViTEncoder(img_size, patch_size, embed_dim, depth, num_heads)
        self.head = nn.Linear(embed_dim, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.encoder(images)[:, 1:])).squeeze(-1)


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train portion, held-out portion); every class keeps ``fraction`` held out (>= 1)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout fraction must lie in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        held.append(members[: max(1, round(fraction * len(members)))])
    held_out = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(labels)), held_out), held_out


class MLOMAEPretrainer(PretrainerBase):
    """The three levels; ``step`` runs one level-1 step and, every ``unroll`` steps, levels 2 and 3.

    Only level 1's forward runs under bf16 autocast: the hypergradient's finite differences
    (perturbations of 0.01 / ||v||) and the small upper levels stay in fp32.
    """

    def __init__(self, mae: MaskedAutoencoder, lr: float, weight_decay: float, seed: int, precision: str = "fp32",
                 *, images: np.ndarray, labels: np.ndarray, normalization: dict[str, list[float]],
                 num_classes: int = 7, holdout_fraction: float = 0.2, unroll: int = 2,
                 head_lr: float = 1e-3, mask_lr: float = 1e-4, batch_size: int = 64,
                 masking_network: dict | None = None):
        self.mae, self.precision = mae, precision
        device = self.device
        self.masking = MaskingNetwork(mae.encoder.img_size, mae.encoder.patch_size,
                                      **(masking_network or {})).to(device)
        self.head = nn.Linear(mae.encoder.embed_dim, num_classes).to(device)
        self.optimizers = [make_optimizer(mae, lr, weight_decay), make_optimizer(self.head, head_lr, 0.0),
                           make_optimizer(self.masking, mask_lr, 0.0)]
        train_idx, held_idx = stratified_holdout(labels, holdout_fraction, seed)
        # on the device, as the training split: a labelled batch costs no host-to-device copy
        self.portions = {name: (torch.from_numpy(images[idx]).to(device),
                                torch.from_numpy(labels[idx]).long().to(device))
                         for name, idx in (("train", train_idx), ("held_out", held_idx))}
        self.mean, self.std = normalization_tensors(normalization, device)
        self.unroll, self.batch_size = unroll, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def trained(self) -> dict[str, nn.Module]:
        return {"mae": self.mae, "masking": self.masking, "head": self.head}

    def mask_scores(self, images: torch.Tensor, progress: float) -> torch.Tensor:
        with torch.no_grad():
            return self.masking(images)

    def labelled_batch(self, portion: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.portions[portion]
        pick = torch.randint(len(images), (self.batch_size,), generator=self.generator).to(self.device)
        return to_model_input(images[pick], self.mean, self.std, channels_last=False), labels[pick]

    def reconstruction_loss(self, images: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Level 1: masked MSE weighted by the masking probabilities (mask fixed by ``scores``)."""
        out = self.mae(images, scores)
        return masked_mean(out.errors, out.mask, weights=self.masking(images))

    def classification_loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        features = self.mae.encoder(images)[:, 1:].mean(dim=1)  # (B, D)
        return F.cross_entropy(self.head(features), labels)

    def step(self, images: torch.Tensor, progress: float) -> dict[str, torch.Tensor]:
        mae_opt = self.optimizers[0]
        scores = self.mask_scores(images, progress)  # masking probabilities, also the loss weights
        with self.autocast():
            out = self.mae(images, scores)
        reconstruction = masked_mean(out.errors.float(), out.mask, weights=scores)
        mae_opt.zero_grad(set_to_none=True)
        reconstruction.backward()
        mae_opt.step()
        self.steps += 1
        logged = {"loss": reconstruction.detach()}
        if self.steps % self.unroll == 0:
            logged.update(self.upper_levels(images, scores, mae_opt.param_groups[0]["lr"]))
        return logged

    def upper_levels(self, images: torch.Tensor, scores: torch.Tensor, inner_lr: float) -> dict[str, torch.Tensor]:
        """Level 2 (head) then level 3 (masking network through the hypergradient)."""
        _, head_opt, mask_opt = self.optimizers
        x_train, y_train = self.labelled_batch("train")
        with torch.no_grad():
            features = self.mae.encoder(x_train)[:, 1:].mean(dim=1)
        head_loss = F.cross_entropy(self.head(features), y_train)
        head_opt.zero_grad(set_to_none=True)
        head_loss.backward()
        head_opt.step()
        x_held, y_held = self.labelled_batch("held_out")
        hyper = darts_hypergradient(
            inner_loss=lambda: self.reconstruction_loss(images, scores),
            outer_loss=lambda: self.classification_loss(x_held, y_held),
            inner_params=list(self.mae.parameters()), outer_params=list(self.masking.parameters()),
            inner_lr=inner_lr)
        mask_opt.zero_grad(set_to_none=True)
        for param, grad in zip(self.masking.parameters(), hyper):
            param.grad = grad
        mask_opt.step()
        with torch.no_grad():
            held_out_loss = self.classification_loss(x_held, y_held)
        return {"head_loss": head_loss.detach(), "held_out_loss": held_out_loss}
