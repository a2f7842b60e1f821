"""RandAugment and random erasing: drawn per sample in the loader, applied on the device."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from vmb.data import augment as A


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def draw(seed: int, num_ops: int = 4, magnitude: float = 7.0, std: float = 0.5, erase: float = 0.25,
         size: int = 32) -> torch.Tensor:
    return A.draw_clip_augment(rng(seed), num_ops, magnitude, std, erase, size, size)


def ops_of(params: torch.Tensor, num_ops: int = 4) -> list[list[int]]:
    return params[:4 * num_ops].view(num_ops, 4).tolist()


def make_clips(n: int = 2, t: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(rng(seed).integers(0, 256, (n, 3, t, size, size), dtype=np.uint8))


def test_layout_and_determinism():
    assert draw(5).shape == (4 * 4 + 6,) and draw(5).dtype == torch.int64
    assert torch.equal(draw(5), draw(5))
    assert any(not torch.equal(draw(0), draw(seed)) for seed in range(1, 5))
    assert A.draw_clip_augment(rng(), 2, 7, 0.5, 0.0, 32, 32).shape == (8,)  # no erasing fields
    assert A.draw_clip_augment(rng(), 0, 7, 0.5, 0.25, 32, 32).shape == (6,)


def test_levels_on_timms_scale_and_op_probability():
    ops = [op for seed in range(200) for op in ops_of(draw(seed, std=0.0))]
    assert {level for _, _, level, _ in ops} == {70}  # level 7 of 10 = bin 70 of 0..100
    assert 0.45 < np.mean([applied for applied, *_ in ops]) < 0.55  # each op applied with probability 0.5
    assert {op for _, op, _, _ in ops} == set(range(len(A.OP_NAMES)))  # every op is drawn
    # "rand-m7" rotates by up to 21 degrees (7/10 of torchvision's 30), not 7 (bin 7 of the default 31).
    rotate = A.OP_NAMES.index("Rotate")
    assert A.op_magnitude(rotate, 70, False, 32, 32) == pytest.approx(21.0)
    assert A.op_magnitude(rotate, 70, True, 32, 32) == pytest.approx(-21.0)
    assert A.op_magnitude(A.OP_NAMES.index("Posterize"), 70, True, 32, 32) == pytest.approx(2.8)  # unsigned


def test_magnitude_noise_and_clipping():
    levels = np.array([level for seed in range(200) for _, _, level, _ in ops_of(draw(seed))]) / 10.0
    assert abs(levels.mean() - 7.0) < 0.15 and 0.35 < levels.std() < 0.65  # N(7, 0.5), 0.1 resolution
    high = [level for seed in range(50) for _, _, level, _ in ops_of(draw(seed, magnitude=9.8, std=2.0))]
    assert all(0 <= level <= 100 for level in high) and 100 in high


@pytest.mark.parametrize("name,reference", [
    ("Rotate", lambda x, m: TF.rotate(x, m, interpolation=v2.InterpolationMode.NEAREST)),
    ("Brightness", lambda x, m: TF.adjust_brightness(x, 1.0 + m)),
    ("Equalize", lambda x, m: TF.equalize(x)),
    ("Solarize", lambda x, m: TF.solarize(x, 255.0 * (1.0 - m))),
])
def test_apply_uses_the_drawn_op_on_every_frame(name, reference):
    clips = make_clips(n=1)
    clips[:, :, 1:] = clips[:, :, :1]  # identical frames
    op = A.OP_NAMES.index(name)
    params = torch.tensor([[1, op, 50, 0, 0, 0, 0, 0]])  # one op at level 5 (bin 50), second op not applied
    out = A.apply_clip_augment(clips, params)
    expected = reference(clips[0].permute(1, 0, 2, 3), A.op_magnitude(op, 50, False, 32, 32))
    assert torch.equal(out[0], expected.permute(1, 0, 2, 3))
    assert torch.equal(out[0, :, 1], out[0, :, 0])


def test_apply_nothing_is_identity():
    clips = make_clips()
    assert A.apply_clip_augment(clips, torch.zeros(2, 0, dtype=torch.int64)) is clips
    assert torch.equal(A.apply_clip_augment(clips, torch.zeros(2, 4 * 4 + 6, dtype=torch.int64)), clips)


def test_erase_fills_one_box_in_every_frame_deterministically():
    clips = torch.zeros(1, 3, 4, 40, 48, dtype=torch.uint8)
    params = torch.tensor([[1, 5, 7, 10, 12, 1234]])  # erase only: top 5, left 7, 10 x 12
    out = A.apply_clip_augment(clips, params)
    assert (clips == 0).all()  # the input is not modified
    mask = (out[0] != 0).any(dim=0)
    assert not mask[:, :5].any() and not mask[:, 15:].any() and not mask[:, :, :7].any() and not mask[:, :, 19:].any()
    assert torch.equal(out[0, :, 0], out[0, :, 3])  # the same noise in every frame
    assert torch.equal(out, A.apply_clip_augment(clips, params))
    assert not torch.equal(out, A.apply_clip_augment(clips, torch.tensor([[1, 5, 7, 10, 12, 99]])))


def test_drawn_erase_boxes_fit_the_frame():
    for seed in range(100):
        erased, top, left, h, w, _ = draw(seed, erase=1.0, size=40)[-6:].tolist()
        if erased:
            assert 0 < h < 40 and 0 < w < 40 and top + h <= 40 and left + w <= 40
