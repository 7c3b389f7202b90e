"""MAE core: patchify round trip, masking from scores, per-patch normalised loss, decoder shapes."""

import torch

from dermascreen.models.vit import ViTEncoder
from dermascreen.pretraining.mae import (MaskedAutoencoder, mask_from_scores, masked_mean, num_masked,
                                         patch_errors, patchify, random_scores, unpatchify)


def test_patchify_round_trip_and_layout():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    patches = patchify(images, 4)
    assert patches.shape == (2, 4, 48)
    torch.testing.assert_close(unpatchify(patches, 4), images)
    # patch 1 is the top-right 4x4 block; its first pixel's 3 channels come first
    torch.testing.assert_close(patches[0, 1, :3], images[0, :, 0, 4])


def test_mask_from_scores_masks_the_highest_scores():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7], [0.4, 0.3, 0.2, 0.1]])
    ids_keep, ids_restore, mask = mask_from_scores(scores, 2)
    assert mask.tolist() == [[0, 1, 0, 1], [1, 1, 0, 0]]
    assert sorted(ids_keep[0].tolist()) == [0, 2]
    assert torch.equal(torch.argsort(ids_restore, 1)[:, :2], ids_keep)


def test_random_masking_masks_75_percent():
    assert num_masked(64, 0.75) == 48 and num_masked(16, 0.75) == 12
    _, _, mask = mask_from_scores(random_scores(10, 64, torch.Generator().manual_seed(0)), 48)
    assert torch.all(mask.sum(1) == 48)


def test_loss_uses_per_patch_normalised_targets_on_masked_patches_only():
    images = torch.randn(1, 3, 8, 8)
    target = patchify(images, 4)
    normalised = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    errors = patch_errors(images, normalised, 4)
    assert torch.allclose(errors, torch.zeros(1, 4), atol=1e-6)
    errors = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    mask = torch.tensor([[0.0, 1.0, 0.0, 1.0]])
    assert masked_mean(errors, mask).item() == 3.0
    assert masked_mean(errors, mask, torch.tensor([[9.0, 0.5, 9.0, 0.5]])).item() == 1.5


def test_autoencoder_shapes_and_encoder_sees_only_visible_patches():
    torch.manual_seed(0)
    mae = MaskedAutoencoder(ViTEncoder(embed_dim=32, depth=1, num_heads=2), decoder_dim=16, decoder_depth=1,
                            decoder_heads=2)
    images = torch.randn(3, 3, 28, 28)
    out = mae(images, random_scores(3, 64))
    assert out.latent.shape == (3, 1 + 16, 32)
    assert out.pred.shape == (3, 64, 48) and out.errors.shape == (3, 64)
    assert torch.all(out.mask.sum(1) == 48)
    masked_mean(out.errors, out.mask).backward()
    assert mae.decoder.mask_token.grad.abs().sum() > 0
    assert mae.reconstruct(images, out).shape == (3, 3, 32, 32)
