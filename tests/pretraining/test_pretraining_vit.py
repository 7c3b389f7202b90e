"""The small ViT: shapes, masked-encoder forward, attention, checkpoints and build_vit's errors."""

import pytest
import torch

from dermascreen.models.vit import (ViTEncoder, build_vit, encoder_checkpoint, load_encoder_checkpoint,
                                    resize_to)

TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2}


def test_classifier_resizes_28_to_32_and_returns_logits():
    torch.manual_seed(0)
    model = build_vit({"arch": "vit", "num_classes": 7, **TINY})
    assert model(torch.randn(5, 3, 28, 28)).shape == (5, 7)
    assert resize_to(torch.randn(1, 3, 28, 28), 32).shape == (1, 3, 32, 32)
    assert model.encoder.num_patches == 64


def test_encoder_runs_on_visible_patches_only():
    torch.manual_seed(0)
    encoder = ViTEncoder(**TINY)
    images = torch.randn(2, 3, 32, 32)
    keep = torch.tensor([[0, 5, 9], [63, 1, 2]])
    tokens = encoder(images, keep)
    assert tokens.shape == (2, 4, 32)
    changed = images.clone()
    changed[:, :, 28:, 28:] = 100.0  # the bottom-right patch (63): dropped for image 0, kept for image 1
    after = encoder(changed, keep)
    torch.testing.assert_close(after[0], tokens[0])
    assert not torch.allclose(after[1], tokens[1])
    every = torch.arange(64).expand(2, -1)
    torch.testing.assert_close(encoder(images, every), encoder(images))


def test_cls_attention_is_a_distribution_over_patches_per_head_beside_the_tokens():
    torch.manual_seed(0)
    encoder, images = ViTEncoder(**TINY), torch.randn(3, 3, 28, 28)
    tokens, attention = encoder.forward_with_cls_attention(images)
    torch.testing.assert_close(tokens, encoder(images))  # one pass gives forward's tokens too
    assert attention.shape == (3, 2, 64)
    assert torch.all(attention.sum(-1) < 1)  # the rest goes to [CLS] itself
    assert torch.all(attention > 0)


def test_pretrained_weights_load_and_set_the_architecture(tmp_path):
    torch.manual_seed(0)
    encoder = ViTEncoder(**TINY)
    path = tmp_path / "encoder.pt"
    torch.save(encoder_checkpoint(encoder, TINY, method="mae"), path)
    model = build_vit({"arch": "vit", "num_classes": 2, "weights": str(path)})
    assert model.encoder.embed_dim == 32 and len(model.encoder.blocks) == 2
    torch.testing.assert_close(model.encoder.patch_embed.weight, encoder.patch_embed.weight)
    assert load_encoder_checkpoint(path)["method"] == "mae"


def test_build_vit_errors_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        build_vit({"num_classes": 7, "weights": str(tmp_path / "missing.pt")})
    bad = tmp_path / "bad.pt"
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(ValueError, match="bad.pt: not a ViT encoder checkpoint"):
        build_vit({"num_classes": 7, "weights": str(bad)})
    good = tmp_path / "good.pt"
    torch.save(encoder_checkpoint(ViTEncoder(**TINY), TINY), good)
    with pytest.raises(ValueError, match="embed_dim=64.*pretrained with 32"):
        build_vit({"num_classes": 7, "weights": str(good), "embed_dim": 64})
    with pytest.raises(ValueError, match="unknown key"):
        build_vit({"num_classes": 7, "filters": 3})
    with pytest.raises(ValueError, match="no imagenet weights"):
        build_vit({"num_classes": 7, "weights": "imagenet"})
