"""The official pretraining augmentations: geometry against exact references, reproducibility."""

import pytest
import torch

from dermascreen.models.vit import resize_to
from dermascreen.pretraining.augment import PADDING, Augment, epoch_generator, resized_crop_boxes, resolve_kind

NORMALIZATION = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}
SIZE = 32


def _ramps(batch: int, side: int = 28) -> torch.Tensor:
    """Channel 0 = column index, channel 1 = row index, channel 2 = image index."""
    cols = torch.arange(side, dtype=torch.float32).expand(side, side)
    image = torch.stack([cols, cols.T, torch.zeros(side, side)])
    return torch.stack([image + torch.tensor([0.0, 0.0, float(b)])[:, None, None] for b in range(batch)])


def test_official_kinds_and_a_clear_error():
    assert resolve_kind("official", "mae") == resolve_kind("official", "automae") == "resized_crop"
    assert resolve_kind("official", "mlo_mae") == "crop" and resolve_kind("none", "mlo_mae") == "none"
    with pytest.raises(ValueError, match="pretraining.shared.pretrain.augment"):
        resolve_kind("randaugment", "mae")


def test_resized_crop_boxes_follow_random_resized_crop():
    boxes = resized_crop_boxes(4000, torch.Generator().manual_seed(0))
    x0, y0, w, h = boxes.unbind(1)
    assert torch.all((x0 >= 0) & (y0 >= 0) & (x0 + w <= 1 + 1e-6) & (y0 + h <= 1 + 1e-6))
    area, ratio = w * h, w / h
    assert area.min() >= 0.2 - 1e-6 and area.max() <= 1 + 1e-6 and area.mean() < 0.7
    assert ratio.min() >= 3 / 4 - 1e-5 and ratio.max() <= 4 / 3 + 1e-5


def test_resized_crop_samples_its_box_at_the_encoder_size_with_flips():
    images = _ramps(64)
    out = Augment("resized_crop", SIZE, NORMALIZATION)(images, torch.Generator().manual_seed(3))
    assert out.shape == (64, 3, SIZE, SIZE)
    again = torch.Generator().manual_seed(3)  # the same draws, in the same order
    flipped = torch.rand(64, generator=again) < 0.5
    x0, y0, w, h = resized_crop_boxes(64, again).unbind(1)
    centres = (torch.arange(SIZE) + 0.5) / SIZE
    inner = slice(1, SIZE - 1)  # the outermost samples may lie past the first pixel centre (border)
    for b in range(64):
        u = centres.flip(0) if flipped[b] else centres
        cols = (x0[b] + u * w[b]) * 28 - 0.5  # bilinear sampling of a ramp is exact
        rows = (y0[b] + centres * h[b]) * 28 - 0.5
        torch.testing.assert_close(out[b, 0, 0, inner], cols[inner], atol=1e-3, rtol=0)
        torch.testing.assert_close(out[b, 1, inner, 0], rows[inner], atol=1e-3, rtol=0)
    assert 10 < int(flipped.sum()) < 54


def test_crop_shifts_whole_pixels_and_pads_black_as_torchvision():
    torch.manual_seed(0)
    images = torch.randn(16, 3, 28, 28)
    augment = Augment("crop", SIZE, NORMALIZATION)
    out = augment(images, torch.Generator().manual_seed(1))
    black = augment.black[0]  # (3, 1, 1): pixel 0 after normalisation
    resized, shifts = resize_to(images, SIZE), set()
    for b in range(16):
        padded = black.expand(3, SIZE + 2 * PADDING, SIZE + 2 * PADDING).clone()
        padded[:, PADDING:-PADDING, PADDING:-PADDING] = resized[b]
        matches = [(i, j, flip) for i in range(2 * PADDING + 1) for j in range(2 * PADDING + 1)
                   for flip in (False, True)
                   if torch.allclose(out[b], padded[:, i:i + SIZE, j:j + SIZE].flip(-1) if flip
                                     else padded[:, i:i + SIZE, j:j + SIZE], atol=1e-5)]
        assert len(matches) == 1
        shifts.add(matches[0])
    assert len(shifts) > 8  # shifts and flips vary across the batch


def test_the_same_generator_state_gives_the_same_batch_and_epochs_differ():
    images = torch.randn(8, 3, 28, 28)
    augment = Augment("resized_crop", SIZE, NORMALIZATION)
    first = augment(images, epoch_generator(0, 1))
    assert torch.equal(first, augment(images, epoch_generator(0, 1)))
    assert not torch.equal(first, augment(images, epoch_generator(0, 2)))
    assert not torch.equal(first, augment(images, epoch_generator(1, 1)))
    assert torch.equal(Augment("none", SIZE, NORMALIZATION)(images, epoch_generator(0, 1)), images)
