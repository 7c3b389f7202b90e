"""BatchAugment: geometry on known images, randomness, configuration."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from dermascreen.training.augment import AffineParams, BatchAugment, identity_params, warp


def with_params(batch: int = 1, **changes: list) -> AffineParams:
    return dataclasses.replace(identity_params(batch), **{key: torch.tensor(value) for key, value in changes.items()})


def dot(row: int, col: int, size: int = 28) -> torch.Tensor:
    image = torch.zeros(1, 3, size, size)
    image[..., row, col] = 1.0
    return image


def ramp(size: int = 16, axis: int = -1) -> torch.Tensor:
    """(1, 1, size, size) whose value is the column (axis -1) or row (axis -2) index."""
    values = torch.arange(size, dtype=torch.float32)
    return (values[None, :] if axis == -1 else values[:, None]).expand(size, size).clone()[None, None]


def brightest(image: torch.Tensor) -> tuple[int, int]:
    index = int(image[0, 0].argmax())
    return divmod(index, image.shape[-1])


def test_identity_params_return_the_input():
    images = torch.rand(4, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(warp(images, identity_params(4)), images, atol=1e-5, rtol=0)


def test_horizontal_flip_moves_column_c_to_w_minus_1_minus_c():
    out = warp(dot(5, 3), with_params(flip=[[True, False]]))
    assert brightest(out) == (5, 28 - 1 - 3)
    torch.testing.assert_close(out, dot(5, 24), atol=1e-5, rtol=0)


def test_vertical_flip_moves_row_r_to_h_minus_1_minus_r():
    out = warp(dot(5, 3), with_params(flip=[[False, True]]))
    torch.testing.assert_close(out, dot(22, 3), atol=1e-5, rtol=0)


def test_shift_moves_a_dot_by_whole_pixels():
    # +3 pixels right (3/28 of the width), 2 pixels up (-2/28 of the height).
    out = warp(dot(10, 10), with_params(shift=[[3 / 28, -2 / 28]]))
    torch.testing.assert_close(out, dot(8, 13), atol=1e-5, rtol=0)


@pytest.mark.parametrize("angle, turns", [(90.0, 1), (-90.0, -1), (180.0, 2)])
def test_rotation_by_quarter_turns_matches_rot90(angle, turns):
    images = torch.arange(2 * 6 * 6, dtype=torch.float32).reshape(1, 2, 6, 6)
    out = warp(images, with_params(angle=[angle]))
    # rot90 with k=1 on (H, W) turns the picture counterclockwise: top-left corner -> bottom-left.
    torch.testing.assert_close(out, torch.rot90(images, turns, dims=(-2, -1)), atol=1e-4, rtol=0)
    if turns == 1:  # corners, (row, col): top-left -> bottom-left -> bottom-right -> top-right -> top-left
        for source, target in [((0, 0), (5, 0)), ((5, 0), (5, 5)), ((5, 5), (0, 5)), ((0, 5), (0, 0))]:
            assert abs(out[0, 1][target] - images[0, 1][source]) < 1e-4


def test_zoom_magnifies_about_the_centre():
    # On a linear ramp bilinear sampling is exact: output column j shows input column c + (j - c) / s.
    size, centre = 16, 7.5
    columns = torch.arange(size, dtype=torch.float32)
    out = warp(ramp(size, axis=-1), with_params(scale=[[2.0, 1.0]]))
    torch.testing.assert_close(out[0, 0, 3], centre + (columns - centre) / 2.0, atol=1e-4, rtol=0)
    out = warp(ramp(size, axis=-2), with_params(scale=[[1.0, 1.25]]))
    torch.testing.assert_close(out[0, 0, :, 3], centre + (columns - centre) / 1.25, atol=1e-4, rtol=0)


def test_uncovered_area_repeats_the_border():
    image = torch.zeros(1, 1, 8, 8)
    image[..., :, 0] = 1.0  # left column bright
    out = warp(image, with_params(shift=[[2 / 8, 0.0]]))  # content moves 2 pixels right
    assert torch.all(out[..., :, :3] > 0.99) and torch.all(out[..., :, 3:] < 1e-5)


def test_non_square_rotation_stays_a_rotation():
    images = torch.arange(4 * 6, dtype=torch.float32).reshape(1, 1, 4, 6)
    out = warp(images, with_params(angle=[180.0]))
    torch.testing.assert_close(out, torch.rot90(images, 2, dims=(-2, -1)), atol=1e-4, rtol=0)


def test_same_seed_same_output_and_images_get_their_own_transform():
    augment = BatchAugment()
    images = torch.rand(1, 3, 28, 28, generator=torch.Generator().manual_seed(0)).expand(8, -1, -1, -1)
    torch.manual_seed(3)
    first = augment(images)
    torch.manual_seed(3)
    torch.testing.assert_close(augment(images), first, atol=0, rtol=0)
    assert not torch.allclose(augment(images), first)  # the RNG moved on
    assert not torch.allclose(first[0], first[1])  # identical inputs, different transforms


def test_sampled_parameters_follow_the_configured_ranges():
    torch.manual_seed(0)
    params = BatchAugment(rotation=20, shift=0.15, zoom=0.1, hflip=True, vflip=False).sample(4000, "cpu")
    assert params.angle.abs().max() <= 20 and params.angle.min() < -19 and params.angle.max() > 19
    assert params.shift.abs().max() <= 0.15 and params.shift.abs().max() > 0.149
    assert params.scale.min() >= 0.9 and params.scale.max() <= 1.1
    assert 0.45 < params.flip[:, 0].float().mean() < 0.55
    assert not params.flip[:, 1].any()
    assert not torch.equal(params.scale[:, 0], params.scale[:, 1])  # zoom drawn per axis, as Keras


def test_eval_mode_and_disabled_config_are_identity():
    images = torch.rand(2, 3, 28, 28)
    assert BatchAugment().eval()(images) is images
    assert isinstance(BatchAugment.from_config(None), nn.Identity)
    assert isinstance(BatchAugment.from_config({"enabled": False, "rotation": 5}), nn.Identity)
    augment = BatchAugment.from_config({"rotation": 10, "vflip": False, "padding_mode": "zeros"})
    assert (augment.rotation, augment.vflip, augment.padding_mode, augment.shift) == (10.0, False, "zeros", 0.15)


def test_bad_configuration_and_input_are_rejected():
    with pytest.raises(ValueError, match="unknown key.*'rotate'"):
        BatchAugment.from_config({"rotate": 10})
    with pytest.raises(ValueError, match="padding_mode='wrap'"):
        BatchAugment(padding_mode="wrap")
    with pytest.raises(ValueError, match="shift=1.5"):
        BatchAugment(shift=1.5)
    with pytest.raises(ValueError, match="float .*torch.uint8"):
        BatchAugment()(torch.zeros(2, 3, 28, 28, dtype=torch.uint8))


def test_keeps_dtype_and_shape_of_bf16_channels_last_batches():
    images = torch.rand(4, 3, 28, 28).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    out = BatchAugment()(images)
    assert out.dtype == torch.bfloat16 and out.shape == images.shape
