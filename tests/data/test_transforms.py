"""Spatial transforms on (C, T, H, W) uint8 clips."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import RandAugment as TorchvisionRandAugment

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


def test_random_crop_shape_and_content():
    clip = make_clip()
    for seed in range(5):
        out = T.random_crop(clip, 32, rng(seed))
        assert out.shape == (3, 4, 32, 32)
        # The crop is a window of the input: find it.
        found = any(torch.equal(out, clip[..., top:top + 32, left:left + 32])
                    for top in range(40 - 32 + 1) for left in range(48 - 32 + 1))
        assert found


def test_random_crop_full_size():
    clip = make_clip(h=32, w=32)
    assert torch.equal(T.random_crop(clip, 32, rng()), clip)


def test_center_crop():
    clip = make_clip()
    out = T.center_crop(clip, 32)
    assert out.shape == (3, 4, 32, 32)
    assert torch.equal(out, clip[..., 4:36, 8:40])


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


@pytest.mark.parametrize("h,w,size,expected", [(40, 48, 20, (20, 24)), (48, 40, 20, (24, 20)),
                                               (40, 48, 80, (80, 96)), (40, 48, 40, (40, 48))])
def test_short_side_scale(h, w, size, expected):
    clip = make_clip(h=h, w=w)
    out = T.short_side_scale(clip, size)
    assert out.shape == (3, 4, *expected)
    assert out.dtype == torch.uint8


def test_short_side_scale_identity_when_already_right():
    clip = make_clip(h=32, w=50)
    assert torch.equal(T.short_side_scale(clip, 32), clip)


def test_short_side_scale_preserves_constant():
    clip = torch.full((3, 2, 40, 48), 123, dtype=torch.uint8)
    assert (T.short_side_scale(clip, 17) == 123).all()


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


def test_rand_augment_deterministic_per_seed():
    clip = make_clip(t=3, h=32, w=32)
    a = T.rand_augment(clip, 4, 9, 0.5, rng(42))
    b = T.rand_augment(clip, 4, 9, 0.5, rng(42))
    assert a.shape == clip.shape and a.dtype == torch.uint8
    assert torch.equal(a, b)
    outs = [T.rand_augment(clip, 4, 9, 0.5, rng(seed)) for seed in range(6)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


def test_rand_augment_same_op_for_every_frame():
    frame = make_clip(t=1, h=32, w=32)
    clip = frame.expand(3, 4, 32, 32).contiguous()  # four identical frames
    for seed in range(4):
        out = T.rand_augment(clip, 3, 9, 0.5, rng(seed))
        for t in range(1, 4):
            assert torch.equal(out[:, t], out[:, 0])


def test_rand_augment_leaves_global_rng_untouched():
    clip = make_clip(t=2, h=32, w=32)
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    T.rand_augment(clip, 4, 9, 0.5, rng(0))
    assert torch.equal(torch.get_rng_state(), state)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    assert torch.equal(torch.rand(3), expected)


def test_rand_augment_advances_numpy_generator():
    generator = rng(0)
    T.rand_augment(make_clip(t=2, h=32, w=32), 2, 5, 0.5, generator)
    assert generator.random() != rng(0).random()


def record_rand_augment_calls(monkeypatch):
    """Replace torchvision's RandAugment by a recorder of (num_ops, magnitude, num_magnitude_bins)."""
    calls = []

    def fake(num_ops, magnitude, num_magnitude_bins):
        calls.append((num_ops, magnitude, num_magnitude_bins))
        return lambda frames: frames
    monkeypatch.setattr(T.v2, "RandAugment", fake)
    return calls


def test_rand_augment_magnitude_is_on_timms_0_to_10_scale(monkeypatch):
    calls = record_rand_augment_calls(monkeypatch)
    for seed in range(50):
        T.rand_augment(make_clip(t=2, h=8, w=8), 4, 7, 0.0, rng(seed))
    assert set(calls) == {(1, 70, 101)}  # one op per call, level 7 of 10 = bin 70 of 0..100
    assert 0.4 < len(calls) / (50 * 4) < 0.6  # each of the 4 ops is applied with probability 0.5
    # "rand-m7" rotates by up to 21 degrees (7/10 of torchvision's 30), not 7 (bin 7 of the default 31).
    rotate = TorchvisionRandAugment._AUGMENTATION_SPACE["Rotate"][0](101, 8, 8)
    assert float(rotate[70]) == pytest.approx(21.0)


def test_rand_augment_magnitude_noise(monkeypatch):
    calls = record_rand_augment_calls(monkeypatch)
    for seed in range(100):
        T.rand_augment(make_clip(t=2, h=8, w=8), 4, 7, 0.5, rng(seed))
    levels = np.array([magnitude for _, magnitude, _ in calls]) / 10.0
    assert abs(levels.mean() - 7.0) < 0.15 and 0.35 < levels.std() < 0.65  # N(7, 0.5), 0.1 resolution
    calls.clear()
    for seed in range(20):
        T.rand_augment(make_clip(t=2, h=8, w=8), 4, 9.8, 2.0, rng(seed))
    assert calls and all(0 <= magnitude <= 100 for _, magnitude, _ in calls)  # clipped to [0, 10]
    assert any(magnitude == 100 for _, magnitude, _ in calls)


def test_random_erase_prob_one_changes_one_box():
    clip = torch.zeros(3, 4, 40, 48, dtype=torch.uint8)
    changed_any = False
    for seed in range(5):
        out = T.random_erase(clip, 1.0, rng(seed))
        assert out.shape == clip.shape and out.dtype == torch.uint8
        assert (clip == 0).all()  # the input is not modified in place
        mask = (out != 0).any(dim=0)  # (T, H, W)
        if not mask.any():
            continue
        changed_any = True
        # The same box in every frame ...
        box = (out[:, 0] != 0).any(dim=0)
        rows, cols = box.any(dim=1).nonzero(), box.any(dim=0).nonzero()
        top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
        assert not mask[:, :top].any() and not mask[:, bottom + 1:].any()
        assert not mask[:, :, :left].any() and not mask[:, :, right + 1:].any()
        # ... strictly smaller than the frame.
        assert (bottom - top + 1) < 40 or (right - left + 1) < 48
    assert changed_any


def test_random_erase_prob_zero_is_identity():
    clip = make_clip()
    assert T.random_erase(clip, 0.0, rng()) is clip
