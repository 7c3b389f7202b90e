"""MLO-MAE (Guo et al. 2024, Alexiland/MLO-MAE): masking learned from the downstream task.

Three levels, as in the official code (Betty, unroll steps 2/1/1, ``main_cifar10.py``):

1. Pretraining: the MAE (encoder + decoder, theta) minimises the reconstruction loss of the
   patches the masking network (phi) rates highest, each weighted by its masking probability,
   so the level-1 solution depends on phi. Two steps per round.
2. Fine-tuning: a classification head (psi: LayerNorm + linear, on the encoder's [CLS] token of
   the whole image, as the official ``FinetuneVisionTransformer``) minimises the cross-entropy on
   a training portion; the encoder is level 1's. One step per round.
3. Masking: the masking network minimises the same cross-entropy on a held-out portion. It sees
   phi only through theta, along both paths of the official dependency graph
   (``u2l = {mask: [pretrain]}``, ``l2u = {pretrain: [finetune, mask], finetune: [mask]}``):
   masking -> pretraining -> masking and masking -> fine-tuning -> pretraining -> masking
   (``hypergrad.darts_hypergradient`` over the chain pretraining, fine-tuning). One step per round.

The masking network is the official ``MLOPatchMasking``: an MLP (one ReLU hidden layer, sigmoid
output) over the flattened patch embeddings (with positions) of the MAE's own encoder. As there,
level 1's loss weights reach theta through those embeddings too. Learning rates as official:
masking 1e-3, head 1e-3 (AdamW). Differences: the head has no dropout (the finite differences
need the same loss twice) and the MAE shares the pipeline's learning rate and schedule with the
other methods (docs/pretraining.md).

Both labelled portions are disjoint, stratified parts of the *train* split: validation stays
untouched for fine-tuning's model and epoch selection, and test for the final report.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dermascreen.pretraining.engine import PretrainerBase, make_optimizer
from dermascreen.pretraining.hypergrad import Level, darts_hypergradient
from dermascreen.pretraining.mae import MaskedAutoencoder, masked_mean
from dermascreen.training.data import normalization_tensors, to_model_input


class MaskingNetwork(nn.Module):
    """Masking probabilities from patch embeddings: (B, N, D) -> (B, N) in (0, 1) (``MLOPatchMasking``)."""

    def __init__(self, num_patches: int, embed_dim: int, hidden: int = 512):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(num_patches * embed_dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, num_patches))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(tokens.flatten(1)))


class ClassificationHead(nn.Module):
    """Level 2's head on the [CLS] token: LayerNorm + linear (the official ``FinetuneVisionTransformer``)."""

    def __init__(self, embed_dim: int, num_classes: int):
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.linear = nn.Linear(embed_dim, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(tokens[:, 0]))


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

    Only level 1's MAE forward runs under bf16 autocast: the hypergradient's finite differences
    (perturbations of 0.01 / ||v||) and the small upper levels stay in fp32. The labelled batches
    get the pretraining augmentation too (the official code augments all three loaders), drawn
    from this pretrainer's generator.
    """

    def __init__(self, mae: MaskedAutoencoder, lr: float, weight_decay: float, seed: int, precision: str = "fp32",
                 *, images: np.ndarray, labels: np.ndarray, normalization: dict[str, list[float]],
                 num_classes: int = 7, holdout_fraction: float = 0.2, unroll: int = 2,
                 head_lr: float = 1e-3, mask_lr: float = 1e-3, batch_size: int = 64,
                 masking_network: dict | None = None):
        self.mae, self.precision = mae, precision
        device = self.device
        self.masking = MaskingNetwork(mae.num_patches, mae.encoder.embed_dim, **(masking_network or {})).to(device)
        self.head = ClassificationHead(mae.encoder.embed_dim, num_classes).to(device)
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

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Masking probabilities (B, N) of the masking network on the MAE's patch embeddings."""
        return self.masking(self.mae.encoder.patch_tokens(images))

    def mask_scores(self, images: torch.Tensor, progress: float) -> torch.Tensor:
        with torch.no_grad():
            return self.probabilities(images)

    def labelled_batch(self, portion: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.portions[portion]
        pick = torch.randint(len(images), (self.batch_size,), generator=self.generator).to(self.device, non_blocking=True)
        batch = to_model_input(images[pick], self.mean, self.std, channels_last=False)
        return (batch if self.augment is None else self.augment(batch, self.generator)), labels[pick]

    def reconstruction_loss(self, images: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Level 1: masked MSE weighted by the masking probabilities (mask fixed by ``scores``)."""
        out = self.mae(images, scores)
        return masked_mean(out.errors, out.mask, weights=self.probabilities(images))

    def classification_loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Levels 2 and 3: the head on the encoder's tokens of the whole image."""
        return F.cross_entropy(self.head(self.mae.encoder(images)), labels)

    def step(self, images: torch.Tensor, progress: float) -> dict[str, torch.Tensor]:
        mae_opt = self.optimizers[0]
        # the weights keep their graph to theta's patch embedding, as official; the ranking does not
        probabilities = self.probabilities(images)
        scores = probabilities.detach()
        with self.autocast():
            out = self.mae(images, scores)
        reconstruction = masked_mean(out.errors.float(), out.mask, weights=probabilities)
        mae_opt.zero_grad(set_to_none=True)
        reconstruction.backward()
        mae_opt.step()
        self.steps += 1
        logged = {"loss": reconstruction.detach()}
        if self.steps % self.unroll == 0:
            logged.update(self.upper_levels(images, scores))
        return logged

    def upper_levels(self, images: torch.Tensor, scores: torch.Tensor) -> dict[str, torch.Tensor]:
        """Level 2 (head) then level 3 (masking network through both hypergradient paths)."""
        mae_opt, head_opt, mask_opt = self.optimizers
        x_train, y_train = self.labelled_batch("train")
        with torch.no_grad():
            tokens = self.mae.encoder(x_train)
        head_loss = F.cross_entropy(self.head(tokens), y_train)
        head_opt.zero_grad(set_to_none=True)
        head_loss.backward()
        head_opt.step()
        x_held, y_held = self.labelled_batch("held_out")
        chain = [Level(lambda: self.reconstruction_loss(images, scores), list(self.mae.parameters()),
                       mae_opt.param_groups[0]["lr"]),
                 Level(lambda: self.classification_loss(x_train, y_train), list(self.head.parameters()),
                       head_opt.param_groups[0]["lr"])]
        hyper = darts_hypergradient(chain, lambda: self.classification_loss(x_held, y_held),
                                    list(self.masking.parameters()))
        mask_opt.zero_grad(set_to_none=True)
        for param, grad in zip(self.masking.parameters(), hyper):
            param.grad = grad
        mask_opt.step()
        with torch.no_grad():
            held_out_loss = self.classification_loss(x_held, y_held)
        return {"head_loss": head_loss.detach(), "held_out_loss": held_out_loss}
