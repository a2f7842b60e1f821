"""Spatial transforms on (C, T, H, W) uint8 clips."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vmb.data import transforms as T


def make_clip(c=3, t=4, h=40, w=48, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (c, t, h, w), generator=g, dtype=torch.uint8)


def rng(seed=0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_to_cthw():
    frames = torch.arange(2 * 3 * 4 * 3, dtype=torch.uint8).reshape(2, 3, 4, 3)  # (T, H, W, C)
    clip = T.to_cthw(frames)
    assert clip.shape == (3, 2, 3, 4)
    assert clip.is_contiguous()
    assert clip[1, 0, 2, 3] == frames[0, 2, 3, 1]


@pytest.mark.parametrize("width,height", [(454, 256), (256, 340), (48, 40)])
def test_center_crop_geometry_is_the_central_square_of_the_short_side(width, height):
    box, out = T.center_crop_geometry(32)(width, height)
    side = min(width, height)
    assert out == (32, 32) and (box.w, box.h) == (side, side)
    assert abs(box.x - (width - side) / 2) <= 1 and abs(box.y - (height - side) / 2) <= 1


def test_jitter_crop_geometry_matches_scale_then_crop():
    """The box is what scaling the short side to s in [256, 320] and cropping 224 would keep."""
    sides = set()
    for seed in range(40):
        box, out = T.jitter_crop_geometry((256, 320), 224, rng(seed))(454, 256)
        assert out == (224, 224) and box.w == box.h
        short_side = round(224 * 256 / box.w)
        assert 256 <= short_side <= 320
        assert 0 <= box.x <= 454 - box.w and 0 <= box.y <= 256 - box.h
        sides.add(box.w)
    assert len(sides) > 5  # the scale really is random
    box, _ = T.jitter_crop_geometry((256, 256), 224, rng())(454, 256)
    assert (box.w, box.h) == (224, 224)  # no scaling: a plain 224 crop


@pytest.mark.parametrize("scale,ratio", [((0.08, 1.0), (3 / 4, 4 / 3)), ((1.0, 1.0), (1.0, 1.0))])
def test_random_resized_crop_geometry_box_in_range(scale, ratio):
    for seed in range(20):
        box, out = T.random_resized_crop_geometry(24, scale, ratio, rng(seed))(48, 40)
        assert out == (24, 24)
        assert 0 <= box.x and box.x + box.w <= 48 and 0 <= box.y and box.y + box.h <= 40
        assert scale[0] * 48 * 40 * 0.8 <= box.w * box.h <= scale[1] * 48 * 40 * 1.2 or box.w == box.h == 40


def test_random_resized_crop_geometry_fallback_is_centre_square():
    box, _ = T.random_resized_crop_geometry(20, (5.0, 6.0), (1.0, 1.0), rng())(48, 40)
    assert (box.x, box.y, box.w, box.h) == (4, 0, 40, 40)


def test_horizontal_flip_mirrors():
    clip = make_clip()
    flipped = T.horizontal_flip(clip, rng(), prob=1.0)
    assert torch.equal(flipped[..., 0], clip[..., -1])
    assert torch.equal(flipped[..., 5], clip[..., 48 - 1 - 5])
    assert torch.equal(T.horizontal_flip(flipped, rng(), prob=1.0), clip)
    assert torch.equal(T.horizontal_flip(clip, rng(), prob=0.0), clip)


def test_horizontal_flip_probability():
    clip = make_clip()
    generator = rng(0)
    flips = sum(not torch.equal(T.horizontal_flip(clip, generator), clip) for _ in range(200))
    assert 60 < flips < 140


def test_normalize_math():
    batch = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 1, 1, 3).expand(2, 3, 2, 1, 3).contiguous()
    mean, std = [0.5, 0.4, 0.2], [0.25, 0.2, 0.1]
    out = T.normalize(batch, mean, std)
    assert out.dtype == torch.float32 and out.shape == batch.shape
    for c in range(3):
        expected = (torch.tensor([0, 51, 255]) / 255.0 - mean[c]) / std[c]
        assert torch.allclose(out[0, c, 0, 0], expected, atol=1e-5)


def test_normalize_builds_its_device_constants_once():
    T._channel_constants.cache_clear()
    batch = torch.zeros(1, 3, 1, 2, 2, dtype=torch.uint8)
    for _ in range(3):
        T.normalize(batch, [0.45] * 3, [0.225] * 3)
    info = T._channel_constants.cache_info()
    assert (info.misses, info.hits) == (1, 2)
