"""Each pretraining method on a tiny ViT: its loss terms, masks, schedule and where gradients go."""

import numpy as np
import pytest
import torch

from dermascreen.models.vit import ViTEncoder
from dermascreen.pretraining.automae import AutoMAEPretrainer, gumbel_topk_mask, rectangle_prior_masks
from dermascreen.pretraining.engine import run_pretraining
from dermascreen.training.schedules import warmup_cosine
from dermascreen.pretraining.mae import mask_from_scores
from dermascreen.pretraining.methods import METHODS, build_autoencoder, build_pretrainer
from dermascreen.pretraining.mlo_mae import MLOMAEPretrainer, stratified_holdout
from dermascreen.pretraining.semmae import intra_part_weight, kmeans_parts, semantic_scores
from dermascreen.pretraining.umae import uniformity_loss

ENCODER = {"embed_dim": 32, "depth": 1, "num_heads": 2}
DECODER = {"dim": 16, "depth": 1, "heads": 2}
PRETRAIN = {"lr": 1e-3, "weight_decay": 0.05, "seed": 0}
NORMALIZATION = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


def _train_set(n: int = 70, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"images": rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8), "labels": np.arange(n) % 7}


def _mae():
    torch.manual_seed(0)
    return build_autoencoder(ENCODER, DECODER, mask_ratio=0.75)


def test_uniformity_term_matches_a_hand_computation():
    # normalised: (1,0), (0,1), (1,1)/sqrt2 -> squared cosines 1,0,.5 / 0,1,.5 / .5,.5,1: mean 5/9
    features = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    assert uniformity_loss(features).item() == pytest.approx(5 / 9)


def test_semmae_schedule_moves_from_intra_to_inter_part():
    assert [intra_part_weight(t) for t in (0.0, 0.5, 1.0)] == [1.0, 0.75, 0.0]


def test_kmeans_recovers_two_obvious_parts():
    features = torch.zeros(1, 8, 4)
    features[0, :3, 0] = 1.0  # patches 0-2 point along axis 0, the rest along axis 1
    features[0, 3:, 1] = 1.0
    features += 0.01 * torch.randn(1, 8, 4, generator=torch.Generator().manual_seed(0))
    parts = kmeans_parts(features, k=2)[0]
    assert len(set(parts[:3].tolist())) == 1 and len(set(parts[3:].tolist())) == 1
    assert parts[0] != parts[3]


def test_semantic_masks_are_intra_part_at_the_start_and_whole_parts_at_the_end():
    parts = torch.arange(64).div(16, rounding_mode="floor").expand(4, -1)  # 4 parts of 16 patches
    g = torch.Generator().manual_seed(0)
    _, _, intra = mask_from_scores(semantic_scores(parts, 4, 1.0, 48, g), 48)
    per_part = torch.stack([intra[:, parts[0] == p].sum(1) for p in range(4)], 1)
    assert torch.all(per_part == 12)  # 75% of every part
    _, _, inter = mask_from_scores(semantic_scores(parts, 4, 0.0, 48, g), 48)
    per_part = torch.stack([inter[:, parts[0] == p].sum(1) for p in range(4)], 1)
    assert torch.all(torch.sort(per_part, 1).values == torch.tensor([0, 16, 16, 16]))  # 3 whole parts


def test_gumbel_topk_is_hard_forward_and_differentiable_backward():
    logits = torch.randn(3, 64, generator=torch.Generator().manual_seed(1)).requires_grad_()
    mask, scores = gumbel_topk_mask(logits, 48, tau=0.5, generator=torch.Generator().manual_seed(0))
    _, _, hard = mask_from_scores(scores, 48)  # the mask the MAE applies
    torch.testing.assert_close(mask.detach(), hard)  # equal up to rounding of soft - soft
    assert torch.all(hard.sum(1) == 48)
    (mask * torch.arange(64.0)).sum().backward()
    assert logits.grad.abs().sum() > 0


def test_rectangle_prior_masks_have_the_generator_mask_size():
    masks = rectangle_prior_masks(5, 8, 48, generator=torch.Generator().manual_seed(0))
    assert masks.shape == (5, 64) and torch.all(masks.sum(1) == 48)


def test_automae_losses_reach_only_their_own_players():
    torch.manual_seed(0)
    source = ViTEncoder(**ENCODER)
    trainer = AutoMAEPretrainer(_mae(), **PRETRAIN, source_encoder=source)
    losses = trainer.losses(torch.randn(4, 3, 28, 28))
    losses["generator"].backward(retain_graph=True)
    assert all(p.grad is None for p in trainer.mae.parameters())
    assert all(p.grad is None for p in source.parameters())
    generator_grads = [p.grad.clone() for p in trainer.mask_generator.parameters()]
    assert sum(g.abs().sum() for g in generator_grads) > 0
    trainer.mask_generator.zero_grad()
    losses["reconstruction"].backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in trainer.mask_generator.parameters())
    assert trainer.mae.encoder.patch_embed.weight.grad.abs().sum() > 0


def test_stratified_holdout_is_disjoint_and_keeps_every_class():
    labels = np.repeat(np.arange(7), [50, 10, 20, 3, 30, 100, 5])
    train, held = stratified_holdout(labels, 0.2, seed=0)
    assert len(np.intersect1d(train, held)) == 0 and len(train) + len(held) == len(labels)
    assert set(labels[held]) == set(range(7)) and set(labels[train]) == set(range(7))
    assert abs(len(held) - 0.2 * len(labels)) <= 7


def test_mlo_mae_masking_network_moves_only_on_upper_level_steps():
    data = _train_set()
    trainer = MLOMAEPretrainer(_mae(), **PRETRAIN, images=data["images"], labels=data["labels"],
                               normalization=NORMALIZATION, batch_size=8,
                               masking_network={"hidden": 16})
    snapshot = [p.detach().clone() for p in trainer.masking.parameters()]
    images = torch.randn(8, 3, 28, 28)
    first = trainer.step(images, 0.0)  # level 1 only (unroll 2)
    assert set(first) == {"loss"}
    assert all(torch.equal(a, b) for a, b in zip(snapshot, trainer.masking.parameters()))
    second = trainer.step(images, 0.0)
    assert {"head_loss", "held_out_loss"} <= set(second)
    assert any(not torch.equal(a, b) for a, b in zip(snapshot, trainer.masking.parameters()))


def test_mlo_mae_masks_the_patches_the_masking_network_rates_highest():
    data = _train_set()
    trainer = MLOMAEPretrainer(_mae(), **PRETRAIN, images=data["images"], labels=data["labels"],
                               normalization=NORMALIZATION, masking_network={"hidden": 16})
    images = torch.randn(2, 3, 28, 28)
    probabilities = trainer.mask_scores(images, 0.0)
    out = trainer.mae(images, probabilities)
    lowest_masked = (probabilities * out.mask + (1 - out.mask) * 2).min(1).values
    highest_visible = (probabilities * (1 - out.mask)).max(1).values
    assert torch.all(lowest_masked >= highest_visible)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_deterministically_in_the_engine(method):
    data = _train_set()
    options = {"mlo_mae": {"batch_size": 8, "masking_network": {"hidden": 16}},
               "semmae": {"num_parts": 3}}.get(method, {})

    def run():
        torch.manual_seed(1)
        source = ViTEncoder(**ENCODER)
        trainer = build_pretrainer(method, _mae(), {**PRETRAIN, "augment": "official"}, options, data,
                                   NORMALIZATION, source)
        return run_pretraining(trainer, data, NORMALIZATION, epochs=2, batch_size=16, warmup_epochs=0.5, seed=0)[0]

    first, second = run(), run()
    assert [row["epoch"] for row in first] == [1, 2]
    assert [row["loss"] for row in first] == [row["loss"] for row in second]
    assert all(np.isfinite(row["loss"]) and row["images_per_s"] > 0 for row in first)


def test_warmup_then_cosine_learning_rate():
    assert warmup_cosine(0, 4, 20) == 0.25 and warmup_cosine(3, 4, 20) == 1.0
    assert warmup_cosine(12, 4, 20) == pytest.approx(0.5)
    assert warmup_cosine(20, 4, 20) == pytest.approx(0.0)


def test_guided_methods_require_a_source_encoder():
    with pytest.raises(ValueError, match="semmae needs a pretrained source encoder"):
        build_pretrainer("semmae", _mae(), PRETRAIN, {})
    with pytest.raises(ValueError, match="unknown pretraining method 'bert'"):
        build_pretrainer("bert", _mae(), PRETRAIN, {})


def test_each_method_reports_its_forward_passes_per_step():
    data = _train_set()
    passes, tokens = {}, {}
    for method in METHODS:
        options = {"mlo_mae": {"batch_size": 8, "masking_network": {"hidden": 16}}, "semmae": {"num_parts": 3}}
        torch.manual_seed(1)
        trainer = build_pretrainer(method, _mae(), PRETRAIN, options.get(method, {}), data, NORMALIZATION,
                                   ViTEncoder(**ENCODER))
        _, compute = run_pretraining(trainer, data, NORMALIZATION, epochs=1, batch_size=16, warmup_epochs=0, seed=0)
        assert compute["steps"] == len(data["labels"]) // 16 and compute["seconds"] > 0
        passes[method], tokens[method] = compute["forward_passes_per_step"], compute["encoder_tokens_per_step"]
    mae = _mae()
    visible, full = 1 + mae.num_patches - mae.n_masked, 1 + mae.num_patches  # tokens, [CLS] included
    assert passes["mae"] == {"encoder": 1.0, "decoder": 1.0} and tokens["mae"] == 16 * visible
    assert passes["semmae"]["part_encoder"] == 1.0 and tokens["semmae"] == 16 * (visible + full)
    assert passes["automae"]["source"] == 1.0
    # MLO-MAE: more encoder passes than MAE (upper levels, virtual steps, finite differences)
    assert passes["mlo_mae"]["encoder"] > 2 and passes["mlo_mae"]["masking"] >= 1
