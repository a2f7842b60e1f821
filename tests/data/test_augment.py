"""RandAugment and random erasing: drawn per sample in the loader, applied on the device, batched and without
host synchronisations, as torchvision's per-clip kernels apply them (tests/data/randaugment_reference.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF
from torchvision.transforms.v2.functional._geometry import _get_inverse_affine_matrix

from randaugment_reference import reference_apply_clip_augment
from vmb.data import augment as A

# Tolerance against the per-clip torchvision reference. Measured on this CPU over every op at every level
# (below) and over 7 frame sizes x 30 seeds of mixed 4-op batches with erasing (15.6 M values): the geometric
# ops gave identical outputs (the same float32 sampling grid, the same nearest grid_sample), the colour ops
# differed in 5 values by 1 grey level (Contrast, on frames whose H x W is not a multiple of the vector width:
# torchvision's add(alpha=...) rounds product and sum separately in its scalar loop and fuses them in its
# vector loop, ours always fuses, and the blend truncates to uint8, so 1 ulp may become 1 grey level).
MAX_COLOUR_DIFF = 1  # grey levels, for the colour ops and erasing
# The share of values that may differ at all: besides the colour ops' rounding, nearest-neighbour sampling may
# take the neighbouring pixel where a sample point lies within float error of a pixel boundary (a last-bit
# difference in the grid on another CPU or on CUDA), which changes the value arbitrarily.
MAX_DIFFERING = 0.001
GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
FRAME_SIZES = [(32, 32), (31, 45), (9, 17), (3, 4), (2, 5)]  # (H, W): square, odd non-square, tiny


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


def textured_clips(n: int, t: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """uint8 (n, 3, t, H, W) noise (every pixel differs from its neighbours, so a misplaced sample shows),
    with a constant first frame in clip 0 and a narrow 100-110 range in clip 1 (AutoContrast's and Equalize's
    flat and stretched cases)."""
    clips = torch.from_numpy(rng(seed).integers(0, 256, (n, 3, t, height, width), dtype=np.uint8))
    clips[0, :, 0] = 77
    clips[1] = clips[1] % 11 + 100
    return clips


def assert_matches_reference(out: torch.Tensor, clips: torch.Tensor, params: torch.Tensor,
                             colour_only: bool) -> None:
    expected = reference_apply_clip_augment(clips, params)
    assert out.shape == expected.shape and out.dtype == torch.uint8 and out.is_contiguous()
    diff = (out.int() - expected.int()).abs()
    assert (diff > 0).float().mean().item() <= MAX_DIFFERING
    if colour_only:
        assert diff.max().item() <= MAX_COLOUR_DIFF


@pytest.mark.parametrize("size", FRAME_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", A.OP_NAMES)
def test_every_op_at_every_level_matches_torchvision(name, size):
    """One clip per (level, sign) at every 10th level bin, and one with the op drawn but not applied."""
    op = A.OP_NAMES.index(name)
    rows = [[1, op, level, negated] for level in range(0, A.LEVEL_BINS, 10) for negated in (0, 1)]
    params = torch.tensor(rows + [[0, op, 50, 0]])
    clips = textured_clips(len(rows) + 1, 3, *size)
    out = A.apply_clip_augment(clips, params)
    assert_matches_reference(out, clips, params, colour_only=name not in GEOMETRIC)
    assert torch.equal(out[-1], clips[-1])  # not applied
    if min(size) > 30:  # on tiny frames some ops may not change a pixel (Equalize needs > 255 of them)
        assert torch.equal(out[:-1], clips[:-1]) == (name == "Identity")


def mixed_params(n: int, height: int, width: int, seed: int) -> torch.Tensor:
    """4 op slots and erasing drawn for `n` clips (levels spread by a large std), with clip 0 getting no op
    and no erasing, clip 1 erasing only, clip 2 the same op in every slot."""
    generator = rng(seed)
    params = torch.stack([A.draw_clip_augment(generator, 4, 6.0, 3.0, 0.5, height, width) for _ in range(n)])
    params[0] = 0
    params[1, :16:4] = 0
    params[1, 16:] = torch.tensor([1, 0, 0, height - 1, width - 1, 7])
    params[2, :16] = torch.tensor([1, A.OP_NAMES.index("Rotate"), 80, 1] * 4)
    return params


@pytest.mark.parametrize("size", FRAME_SIZES[:3], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("seed", range(4))
def test_mixed_batches_match_torchvision(seed, size):
    """Different ops, levels and signs per clip, several slots (one clip's ops after another's), erasing."""
    params = mixed_params(12, *size, seed)
    clips = textured_clips(12, 4, *size, seed)
    out = A.apply_clip_augment(clips, params)
    assert_matches_reference(out, clips, params, colour_only=False)
    assert torch.equal(out[0], clips[0])
    plan = A.plan_augment(params, *size)
    assert len(plan.slots) == 4 and all(plan.slots) and plan.erase  # the batch exercises what it says
    assert len({group.kind for groups in plan.slots for group in groups}) >= 4


def test_plan_groups_clips_by_op_and_packs_what_the_device_needs():
    """The host-side plan: per slot, the clips of each op (the geometric ops together), and their data."""
    height, width = 40, 48
    shear, rotate, posterize, solarize, contrast = (A.OP_NAMES.index(name) for name in
                                                    ("ShearX", "Rotate", "Posterize", "Solarize", "Contrast"))
    params = torch.tensor([
        [1, shear, 100, 0, 1, posterize, 50, 0] + [0] * 6,
        [1, posterize, 100, 1, 1, solarize, 20, 0] + [1, 2, 3, 4, 5, 99],
        [1, rotate, 0, 0, 1, solarize, 20, 0] + [0] * 6,
        [0, contrast, 10, 0, 1, contrast, 100, 1] + [0] * 6,
    ])
    plan = A.plan_augment(params, height, width)
    packed = plan.packed
    assert packed.dtype == torch.int64 and packed.dim() == 1 and packed.device.type == "cpu"
    groups = [{g.kind: (packed[g.index:g.index + g.count].tolist(), g) for g in slot} for slot in plan.slots]
    assert {kind: clips for kind, (clips, _) in groups[0].items()} == {"affine": [0, 2], "Posterize": [1]}
    assert {kind: clips for kind, (clips, _) in groups[1].items()} == {"Posterize": [0], "Solarize": [1, 2],
                                                                       "Contrast": [3]}
    assert plan.erase == [(1, 2, 3, 4, 5, 99)]
    as_bytes, as_floats = packed.view(torch.uint8), packed.view(torch.float32)
    assert as_bytes[groups[0]["Posterize"][1].data].item() == 0xF0  # 8 - 4 bits kept
    assert as_bytes[groups[1]["Posterize"][1].data].item() == 0xFC  # 8 - 2
    data = groups[1]["Solarize"][1].data
    assert as_bytes[data:data + 2].tolist() == [204, 204]  # 255 * (1 - 0.2): grey levels >= 204 are inverted
    data = groups[1]["Contrast"][1].data
    assert as_floats[data:data + 2].tolist() == pytest.approx([0.1, 0.9])  # factor 1 - 0.9 and 1 - factor
    # The affine matrices torchvision's grid uses: its inverse matrix in float32, transposed, over half the size.
    shear_matrix = _get_inverse_affine_matrix([-width / 2, -height / 2], 0.0, [0.0, 0.0], 1.0,
                                              [float(np.degrees(np.arctan(0.3))), 0.0])
    half = torch.tensor([width / 2, height / 2])
    expected = torch.stack([torch.tensor(shear_matrix).view(2, 3).t() / half, torch.eye(3, 2) / half])
    data = groups[0]["affine"][1].data
    assert torch.equal(as_floats[data:data + 12].view(2, 3, 2), expected)


def every_op_params(height: int, width: int) -> torch.Tensor:
    """One clip per op: clip i gets op i, i + 3, i + 6 and i + 9 (mod 14) in its 4 slots, at mixed levels and
    signs; every other clip is erased."""
    n = len(A.OP_NAMES)
    return torch.tensor([[field for k in range(4) for field in (1, (i + 3 * k) % n, 40 + 20 * k, (i + k) % 2)]
                         + ([1, i, i + 1, height // 3, width // 4, i] if i % 2 else [0] * 6) for i in range(n)])


class TransferSpy(TorchFunctionMode):
    """Records, on any device, the calls that move host data to a device: `Tensor.to`/`cuda` with a device,
    `pin_memory`, and `torch.tensor`/`as_tensor`/`asarray` given a device (how torchvision's per-clip kernels
    build their matrices), and the index tensors passed to index_select/index_copy_."""

    def __init__(self) -> None:
        super().__init__()
        self.transfers: list[tuple[str, torch.Tensor, torch.Tensor, dict]] = []  # (name, source, result, kwargs)
        self.indices: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        result = func(*args, **kwargs)
        to_device = name in ("to", "cuda") and ("device" in kwargs or name == "cuda"
                                                or any(isinstance(a, (torch.device, str)) for a in args[1:]))
        if to_device or name == "pin_memory":
            self.transfers.append((name, args[0], result, kwargs))
        elif name in ("tensor", "as_tensor", "asarray") and kwargs.get("device") is not None:
            self.transfers.append((name, args[0], result, kwargs))
        elif name in ("index_select", "index_copy_", "index_copy"):
            self.indices.append(args[2] if len(args) > 2 else kwargs["index"])
        return result


def test_one_host_to_device_transfer_per_call():
    """Everything the ops need besides the clips arrives in one non-blocking copy of the plan's packed
    tensor, and every device index is a slice of it. On the CPU the spy sees what names a device; run on the
    per-clip torchvision path it sees that path's per-clip, per-op torch.tensor(..., device=...)."""
    size = (31, 45)
    params, clips = every_op_params(*size), textured_clips(len(A.OP_NAMES), 2, *size)
    with TransferSpy() as spy:
        out = A.apply_clip_augment(clips, params)
    assert len(spy.transfers) == 1
    name, source, on_device, kwargs = spy.transfers[0]
    assert name == "to" and kwargs == {"non_blocking": True} and on_device.device == clips.device
    assert torch.equal(source, A.plan_augment(params, *size).packed)
    assert spy.indices and all(index.untyped_storage().data_ptr() == on_device.untyped_storage().data_ptr()
                               for index in spy.indices)
    assert_matches_reference(out, clips, params, colour_only=False)

    with TransferSpy() as spy:  # the same batch through the per-clip torchvision kernels
        reference_apply_clip_augment(clips, params)
    ops = [A.OP_NAMES[op] for row in params.tolist() for op in row[1:16:4]]  # every op slot is applied
    geometric_or_sharpness = sum(name in GEOMETRIC + ("Sharpness",) for name in ops)
    assert geometric_or_sharpness > 1 and len(spy.transfers) >= geometric_or_sharpness

    erase_only = params.clone()
    erase_only[:, :16:4] = 0
    with TransferSpy() as spy:
        A.apply_clip_augment(clips, erase_only)
    assert spy.transfers == []  # erasing needs nothing on the device but a seeded generator


def test_params_must_stay_on_the_host():
    with pytest.raises(ValueError, match="params must be on the CPU"):
        A.apply_clip_augment(make_clips(), torch.zeros(2, 4, dtype=torch.int64, device="meta"))
