"""Frozen-encoder probes: a representation that separates the classes scores high, chance scores low."""

import numpy as np
import torch

from dermascreen.models.vit import ViTEncoder
from dermascreen.pretraining.probe import encoder_features, probe_scores

NORMALIZATION = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


def _split(n: int, seed: int, informative: bool) -> dict:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 7
    images = rng.integers(0, 256, (n, 28, 28, 3)).astype(np.uint8)
    if informative:  # the class sets the brightness of the image: any encoder sees it
        images = np.clip(images // 4 + (labels * 30)[:, None, None, None], 0, 255).astype(np.uint8)
    return {"images": images, "labels": labels}


def test_features_are_mean_pooled_patch_tokens():
    torch.manual_seed(0)
    encoder = ViTEncoder(embed_dim=16, depth=1, num_heads=2)
    images = _split(5, 0, True)["images"]
    features = encoder_features(encoder, images, NORMALIZATION, batch_size=2)
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    with torch.no_grad():
        expected = encoder(x)[:, 1:].mean(dim=1)
    assert features.shape == (5, 16)
    np.testing.assert_allclose(features, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_probes_separate_informative_images_and_not_noise():
    torch.manual_seed(0)
    encoder = ViTEncoder(embed_dim=16, depth=1, num_heads=2)
    good = probe_scores(encoder, _split(210, 0, True), _split(70, 1, True), NORMALIZATION)
    noise = probe_scores(encoder, _split(210, 0, False), _split(70, 1, False), NORMALIZATION)
    assert good["knn_accuracy"] > 0.9 and good["linear_balanced_accuracy"] > 0.9
    assert noise["knn_accuracy"] < 0.4 and noise["linear_accuracy"] < 0.4  # 7 classes: chance 0.14
