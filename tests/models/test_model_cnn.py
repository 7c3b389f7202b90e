"""The custom CNN: the seed's three configurations, block structure, dropout schedule, pooling."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dermascreen.models import build_model

SEED_CONFIGS = {  # name: (filters, depth, dropout, dense)
    "CNN_v1": (32, 3, 0.5, 512),
    "CNN_v2": (64, 4, 0.4, 256),
    "CNN_v3": (128, 4, 0.3, 512),
}


def cnn(filters: int, depth: int, dropout: float, dense: int, **extra) -> nn.Module:
    return build_model({"arch": "cnn", "filters": filters, "depth": depth, "dropout": dropout, "dense": dense,
                        **extra})


@pytest.mark.parametrize("name", SEED_CONFIGS)
def test_seed_configurations_have_the_documented_structure(name):
    filters, depth, dropout, dense = SEED_CONFIGS[name]
    model = cnn(filters, depth, dropout, dense)
    blocks = list(model.backbone)
    assert len(blocks) == depth
    for i, block in enumerate(blocks):
        conv, norm, act, pool, drop = block
        assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.padding == (1, 1)
        assert conv.out_channels == filters * 2 ** i and norm.num_features == filters * 2 ** i
        assert isinstance(act, nn.ReLU) and isinstance(pool, nn.MaxPool2d)
        assert drop.p == pytest.approx(dropout * (i + 1) / depth)  # grows to `dropout` at the last block
    flatten, first, relu, drop, last = model.head
    side = {3: 3, 4: 1}[depth]  # 28 -> 14 -> 7 -> 3 (-> 1): MaxPool floors
    assert first.in_features == filters * 2 ** (depth - 1) * side * side and first.out_features == dense
    assert drop.p == dropout and (last.in_features, last.out_features) == (dense, 2)
    model.train()
    logits = model(torch.randn(4, 3, 28, 28).contiguous(memory_format=torch.channels_last))
    assert logits.shape == (4, 2)


def test_cnn_v1_parameter_count_matches_the_formula():
    # conv (no bias) + BN per block, then 1152 -> 512 -> 2.
    convs = 3 * 9 * 32 + 32 * 9 * 64 + 64 * 9 * 128
    norms = 2 * (32 + 64 + 128)
    head = 128 * 3 * 3 * 512 + 512 + 512 * 2 + 2
    model = cnn(*SEED_CONFIGS["CNN_v1"])
    assert sum(p.numel() for p in model.parameters()) == convs + norms + head


def test_depth_that_pools_below_one_pixel_is_rejected():
    with pytest.raises(ValueError, match="cnn depth 5 pools a 28x28 image below 1 pixel; the largest depth for it is 4"):
        cnn(32, 5, 0.3, 128)
    assert cnn(8, 5, 0.3, 16, image_size=64)(torch.randn(2, 3, 64, 64)).shape == (2, 2)


def test_dropout_is_active_in_train_mode_and_off_in_eval_mode():
    torch.manual_seed(0)
    model = cnn(*SEED_CONFIGS["CNN_v1"])
    images = torch.randn(4, 3, 28, 28)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(images), model(images), atol=0, rtol=0)
        model.train()
        assert not torch.allclose(model(images), model(images))
