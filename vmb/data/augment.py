"""RandAugment and random erasing (MViT recipe), drawn in the data loader and applied on the training device.

On the CPU these ops cost about as much as decoding a clip (about 30 ms per 16x224x224 clip on one core
through torchvision's per-clip kernels, a third of that batched as below, against about 25 ms to decode and
crop it), so a data-loader worker only *draws* them: `draw_clip_augment` turns the sample's generator into a
small integer tensor of parameters that travels with the clip, and the training loop calls
`apply_clip_augment` on the device-resident uint8 batch. A sample's augmentation therefore depends on its own
(seed, epoch, index) generator only, as before, not on the device or the process count; only the erasing noise
is drawn on the device (from a generator seeded by the parameters), so its pixel values differ between CPU and
CUDA runs.

Magnitudes follow timm's RandAugment as PySlowFast's "rand-m7-n4-mstd0.5" uses it: a level in [0, 10]
(10 = each op's full range) drawn per op from N(magnitude, magnitude_std), each of the n ops applied with
probability 0.5; the ops and their ranges are torchvision's RandAugment (Identity instead of timm's Invert,
no SolarizeAdd). The same op and level apply to every frame of a clip.

Parameter layout per sample (int64): for each of the `num_ops` ops `[applied, op, level_bin, negated]`,
then `[erased, top, left, height, width, noise_seed]`.

`apply_clip_augment` never makes the host wait for the device: everything a call needs besides the clips
(per op slot, which clips get which op, their affine matrices, blend factors, posterize masks, solarize
thresholds) is derived on the host from the parameters and packed into one int64 host tensor, pinned on CUDA
and copied with one non-blocking transfer per call (none if only erasing applies); the ops then run batched
over the clips that have them, slot by slot, indexed by slices of that device tensor, with constants built
once per device and frame size. Erasing seeds a device generator per clip, which does not sync either.

The result is torchvision's RandAugment (its per-clip kernels: tests/data/randaugment_reference.py): identical
for the geometric ops, erasing and the colour ops but Contrast, which may differ by 1 grey level; the tests allow
1 grey level in the colour ops and 0.1 % of values differing (nearest-neighbour ties). The measurements behind
this, and why Kornia is not used, are in docs/DATA.md ("Design measurements").
"""
from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple, Sequence

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

RAND_MAX_LEVEL = 10.0
LEVEL_BINS = 101  # levels at a resolution of 0.1 on timm's 0-10 scale
RAND_OP_PROB = 0.5  # timm applies each of the num_ops ops with this probability
_OP_FIELDS, _ERASE_FIELDS = 4, 6

# name -> (magnitude at full level for a (height, width) frame, signed); torchvision's RandAugment ranges:
# shear 0.3, translate 150/331 of the side, rotate 30 degrees, enhance 0.9, posterize 8 -> 4 bits, solarize
# threshold 1.0 -> 0.0 of the range.
_RANGES: dict[str, tuple[Callable[[int, int], float], bool]] = {
    "Identity": (lambda h, w: 0.0, False),
    "ShearX": (lambda h, w: 0.3, True),
    "ShearY": (lambda h, w: 0.3, True),
    "TranslateX": (lambda h, w: 150.0 / 331.0 * w, True),
    "TranslateY": (lambda h, w: 150.0 / 331.0 * h, True),
    "Rotate": (lambda h, w: 30.0, True),
    "Brightness": (lambda h, w: 0.9, True),
    "Color": (lambda h, w: 0.9, True),
    "Contrast": (lambda h, w: 0.9, True),
    "Sharpness": (lambda h, w: 0.9, True),
    "Posterize": (lambda h, w: 4.0, False),
    "Solarize": (lambda h, w: 1.0, False),
    "AutoContrast": (lambda h, w: 0.0, False),
    "Equalize": (lambda h, w: 0.0, False),
}
OP_NAMES = tuple(_RANGES)
_AFFINE_OPS = frozenset({"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"})  # one grid_sample per slot


def draw_clip_augment(rng: np.random.Generator, num_ops: int, magnitude: float, magnitude_std: float,
                      erase_prob: float, height: int, width: int, erase_scale: Sequence[float] = (0.02, 1 / 3),
                      erase_ratio: Sequence[float] = (0.3, 3.3)) -> torch.Tensor:
    """Draw one clip's `num_ops` RandAugment ops (0: none) and, if `erase_prob` > 0, its erasing box from
    `rng`; an int64 tensor in the module's layout."""
    params: list[int] = []
    for _ in range(num_ops):
        applied = rng.random() < RAND_OP_PROB
        op = int(rng.integers(len(OP_NAMES)))
        level = float(np.clip(rng.normal(magnitude, magnitude_std), 0.0, RAND_MAX_LEVEL))
        negated = rng.random() < 0.5
        params += [int(applied), op, round(level / RAND_MAX_LEVEL * (LEVEL_BINS - 1)), int(negated)]
    erase = [0] * _ERASE_FIELDS
    if erase_prob > 0 and rng.random() < erase_prob:
        for _ in range(10):
            target_area = height * width * rng.uniform(*erase_scale)
            aspect = math.exp(rng.uniform(math.log(erase_ratio[0]), math.log(erase_ratio[1])))
            h, w = round(math.sqrt(target_area * aspect)), round(math.sqrt(target_area / aspect))
            if 0 < h < height and 0 < w < width:
                erase = [1, int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w,
                         int(rng.integers(0, 2**62))]
                break
    return torch.tensor(params + (erase if erase_prob > 0 else []), dtype=torch.int64)


def op_magnitude(op: int, level_bin: int, negated: bool, height: int, width: int) -> float:
    """The signed magnitude of op `op` at `level_bin` (of LEVEL_BINS) for a `height` x `width` frame."""
    full, signed = _RANGES[OP_NAMES[op]]
    magnitude = full(height, width) * level_bin / (LEVEL_BINS - 1)
    return -magnitude if signed and negated else magnitude


def apply_clip_augment(clips: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Apply each clip's drawn ops and erasing to a uint8 batch (N, C, T, H, W) on any device; `params` (N, P)
    int64 on the CPU. Returns a new contiguous uint8 (N, C, T, H, W) tensor (`clips` itself if P is 0).

    No host synchronisation: `params` is read on the host, and what the ops need on the device travels in
    one host tensor (`plan_augment`), pinned on CUDA and copied with one non-blocking transfer.
    """
    if params.shape[1] == 0:
        return clips
    if params.device.type != "cpu":
        raise ValueError(f"apply_clip_augment: params must be on the CPU (reading them elsewhere syncs), "
                         f"got {params.device}")
    height, width = clips.shape[-2:]
    plan = plan_augment(params, height, width)
    if not any(plan.slots) and not plan.erase:
        return clips.contiguous()
    x = clips.clone(memory_format=torch.contiguous_format)  # the ops write into it; `clips` stays as it was
    if any(plan.slots):
        host = plan.packed.pin_memory() if clips.device.type == "cuda" else plan.packed
        words = host.to(clips.device, non_blocking=True)  # the call's only host-to-device transfer
        views = _Views(words.view(torch.float32), words.view(torch.uint8))
        for groups in plan.slots:  # slot k on every clip before slot k + 1
            for group in groups:  # disjoint clips: the order of the groups within a slot does not matter
                if group.count == x.shape[0]:  # every clip (indices ascending and distinct)
                    x = _KERNELS[group.kind](x, views, group).contiguous()
                else:
                    index = words[group.index:group.index + group.count]
                    out = _KERNELS[group.kind](x.index_select(0, index), views, group)
                    _rows(x).index_copy_(0, index, _rows(out.contiguous()))
    if plan.erase:
        generator = torch.Generator(device=x.device)  # seeded per clip: no host-device traffic
        for clip, top, left, h, w, seed in plan.erase:
            generator.manual_seed(seed)
            noise = torch.randint(0, 256, (x.shape[1], 1, h, w), generator=generator, device=x.device,
                                  dtype=torch.uint8)
            x[clip, :, :, top:top + h, left:left + w] = noise  # the same box and noise in every frame
    return x.contiguous()


def _rows(x: torch.Tensor) -> torch.Tensor:
    """A contiguous uint8 (N, ...) tensor as (N, M) rows of the widest integer type that divides a row: the
    same bytes, which index_copy_ on the CPU moves about 10 times faster than single bytes."""
    row = x[0].numel()
    for dtype in (torch.int64, torch.int32, torch.int16):
        if row % dtype.itemsize == 0:
            return x.view(x.shape[0], -1).view(dtype)
    return x.view(x.shape[0], -1)


class OpGroup(NamedTuple):
    """The clips of one op slot that get `kind` (an op name, or "affine" for the geometric ops): their
    indices are words [index, index + count) of the packed tensor; their per-clip data starts at element
    `data` of its float32 or uint8 view (-1: none)."""
    kind: str
    index: int
    count: int
    data: int


class AugmentPlan(NamedTuple):
    """What `apply_clip_augment` does to a batch: `packed`, the 1-D int64 host tensor that is the call's one
    transfer to the device; `slots`, the groups of each op slot in order; `erase`, the erased clips as
    (clip, top, left, height, width, noise_seed)."""
    packed: torch.Tensor
    slots: list[list[OpGroup]]
    erase: list[tuple[int, int, int, int, int, int]]


def plan_augment(params: torch.Tensor, height: int, width: int) -> AugmentPlan:
    """The plan for `params` (N, P) int64 on the CPU and `height` x `width` frames, computed on the host.

    Per-clip data, packed into whole int64 words: "affine" the (3, 2) float32 matrix torchvision's
    `_affine_grid` multiplies its base grid by (the transposed inverse affine matrix over half the frame
    size), Brightness its factor, Color/Contrast (factor, 1 - factor), Sharpness 1 - factor (float32);
    Posterize the bit mask, Solarize the smallest inverted grey level (uint8).
    """
    num_ops = (params.shape[1] - (_ERASE_FIELDS if params.shape[1] % _OP_FIELDS else 0)) // _OP_FIELDS
    rows = params.tolist()
    packer = _Packer()
    slots: list[list[OpGroup]] = []
    for k in range(num_ops):
        members: dict[str, list[tuple[int, float, str]]] = {}  # kind -> [(clip, magnitude, op name)]
        for clip, row in enumerate(rows):
            applied, op, level_bin, negated = row[_OP_FIELDS * k:_OP_FIELDS * (k + 1)]
            name = OP_NAMES[op]
            if applied and name != "Identity":
                kind = "affine" if name in _AFFINE_OPS else name
                members.setdefault(kind, []).append(
                    (clip, op_magnitude(op, level_bin, bool(negated), height, width), name))
        groups = []
        for kind, entries in members.items():
            index = packer.add([clip for clip, _, _ in entries], np.int64)
            data = _clip_data(kind, [(m, name) for _, m, name in entries], height, width)
            offset = -1 if data is None else packer.add(data, data.dtype)
            groups.append(OpGroup(kind, index, len(entries), offset))
        slots.append(groups)
    erase = [(clip, *row[_OP_FIELDS * num_ops + 1:]) for clip, row in enumerate(rows)
             if row[_OP_FIELDS * num_ops:] and row[_OP_FIELDS * num_ops]]
    return AugmentPlan(packer.tensor(), slots, erase)


class _Packer:
    """Segments of int64, float32 or uint8 values, each starting on an int64 word, as one int64 array."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []
        self.words = 0

    def add(self, values: Sequence | np.ndarray, dtype: npt.DTypeLike) -> int:
        """Append `values` as `dtype`; their offset in elements of the packed tensor viewed as `dtype`."""
        values = np.asarray(values, dtype=dtype).ravel()
        per_word = 8 // values.itemsize
        segment = np.zeros(-(-values.size // per_word) * per_word, dtype=dtype)
        segment[:values.size] = values
        offset = self.words * per_word
        self.parts.append(segment.view(np.int64))
        self.words += segment.size // per_word
        return offset

    def tensor(self) -> torch.Tensor:
        return torch.from_numpy(np.concatenate(self.parts) if self.parts else np.zeros(0, np.int64))


def _clip_data(kind: str, ops: list[tuple[float, str]], height: int, width: int) -> np.ndarray | None:
    """The per-clip data of a group of `kind` from its clips' (signed magnitude, op name), as `plan_augment`
    describes it; None for the parameterless ops."""
    magnitudes = [m for m, _ in ops]
    if kind == "affine":
        half = np.array([0.5 * width, 0.5 * height], dtype=np.float32)
        return np.stack([np.array(_inverse_affine(name, m, height, width), dtype=np.float32).reshape(2, 3).T / half
                         for m, name in ops])  # torchvision: float32 theta, transposed, divided in float32
    if kind == "Brightness":
        return np.array([1.0 + m for m in magnitudes], dtype=np.float32)
    if kind in ("Color", "Contrast"):  # torchvision's _blend: image * ratio + degenerate * (1 - ratio)
        return np.array([(1.0 + m, 1.0 - (1.0 + m)) for m in magnitudes], dtype=np.float32)
    if kind == "Sharpness":  # the weight of (blurred - image): 1 - factor
        return np.array([1.0 - (1.0 + m) for m in magnitudes], dtype=np.float32)
    if kind == "Posterize":  # torchvision keeps the top int(round(8 - m)) bits
        return np.array([(0xFF << (8 - int(round(8 - m)))) & 0xFF for m in magnitudes], dtype=np.uint8)
    if kind == "Solarize":  # uint8 >= a float threshold compares in float32: x >= ceil(float32(threshold))
        return np.array([math.ceil(np.float32(255.0 * (1.0 - m))) for m in magnitudes], dtype=np.uint8)
    return None


def _inverse_affine(name: str, magnitude: float, height: int, width: int) -> list[float]:
    """The 2x3 matrix (centred pixel coordinates, output -> input) of a geometric op as torchvision builds
    it for the previous per-clip calls: TF.affine(shear=[degrees(atan(m)), 0] or [0, ...], center=[0, 0]),
    TF.affine(translate=[int(m), 0] or [0, int(m)]), TF.rotate(m) about the centre; nearest, fill 0."""
    center, angle, translate, shear = [0.0, 0.0], 0.0, [0.0, 0.0], [0.0, 0.0]
    if name in ("ShearX", "ShearY"):
        center = [0.0 - width * 0.5, 0.0 - height * 0.5]  # center=[0, 0]: the top-left corner
        shear[name == "ShearY"] = math.degrees(math.atan(magnitude))
    elif name in ("TranslateX", "TranslateY"):
        translate[name == "TranslateY"] = float(int(magnitude))
    else:  # Rotate: TF.rotate takes the angle mod 360 and builds the matrix of -angle
        angle = -(magnitude % 360)
    # torchvision's _get_inverse_affine_matrix at scale 1.0, the same double arithmetic in the same order.
    rot, sx, sy = math.radians(angle), math.radians(shear[0]), math.radians(shear[1])
    (cx, cy), (tx, ty) = center, translate
    cos_sy, tan_sx, rot_minus_sy = math.cos(sy), math.tan(sx), rot - sy
    cx_plus_tx, cy_plus_ty = cx + tx, cy + ty
    a = math.cos(rot_minus_sy) / cos_sy
    b = -(a * tan_sx + math.sin(rot))
    c = math.sin(rot_minus_sy) / cos_sy
    d = math.cos(rot) - c * tan_sx
    matrix = [d, -b, 0.0, -c, a, 0.0]
    matrix[2] += cx - matrix[0] * cx_plus_tx - matrix[1] * cy_plus_ty
    matrix[5] += cy - matrix[3] * cx_plus_tx - matrix[4] * cy_plus_ty
    return matrix


class _Views(NamedTuple):
    """The packed tensor on the device viewed as float32 and as uint8, for the kernels' per-clip data."""
    floats: torch.Tensor
    bytes: torch.Tensor


def _per_clip(values: torch.Tensor, count: int, width: int = 1) -> torch.Tensor:
    """`count` x `width` per-clip values -> (count, width, 1, 1, 1): broadcast over (C, T, H, W)."""
    return values[:count * width].view(count, width, 1, 1, 1)


def _affine(x: torch.Tensor, v: _Views, g: OpGroup) -> torch.Tensor:
    """Per-clip affine warps of uint8 (n, C, T, H, W), nearest with fill 0, as torchvision's kernels map pixels:
    its sampling grid (_affine_grid) from the packed matrices, and grid_sample (nearest, zero padding,
    align_corners=False) applied to an image of pixel numbers, so that it picks each output pixel's source
    pixel (or 0: outside) by its own rounding; the C * T frames of a clip are then gathered in uint8."""
    n, c, t, h, w = x.shape
    theta = v.floats[g.data:g.data + 6 * n].view(n, 3, 2)
    xs, ys, numbers = _base_grid(x.device, h, w)
    # (x, y, 1) @ theta as torchvision's bmm computes it, but elementwise: the same float32 values on the CPU
    # (measured), and no TF32 on CUDA, where vmb.engine.numerics allows it for fp32 matmuls.
    grid = (xs * theta[:, 0:1] + ys * theta[:, 1:2] + theta[:, 2:3]).view(n, h, w, 2)
    source = F.grid_sample(numbers.expand(n, 1, h, w), grid, mode="nearest", padding_mode="zeros",
                           align_corners=False).view(n, 1, h * w).long()  # 1 + the source pixel, 0 outside
    inside = source > 0
    out = x.reshape(n, c * t, h * w).gather(2, source.sub_(1).clamp_(min=0).expand(n, c * t, h * w))
    return out.mul_(inside).view(n, c, t, h, w)


@functools.lru_cache(maxsize=16)
def _base_grid(device: torch.device, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The x and y columns, (1, H * W, 1) float32 each, of torchvision's _affine_grid base grid (centred pixel
    coordinates in row-major order), and the pixel numbers 1..H * W as a (1, 1, H, W) float32 image (exact
    below 2**24 pixels). Built once per device and frame size, from device-side factories only."""
    if height * width >= 2**24:
        raise ValueError(f"apply_clip_augment: {height}x{width} frames have too many pixels to number in float32")
    xs = torch.linspace((1.0 - width) * 0.5, (width - 1.0) * 0.5, steps=width, device=device)
    ys = torch.linspace((1.0 - height) * 0.5, (height - 1.0) * 0.5, steps=height, device=device)
    numbers = torch.arange(1, height * width + 1, dtype=torch.float32, device=device).view(1, 1, height, width)
    return (xs.expand(height, width).reshape(1, height * width, 1),
            ys.unsqueeze(-1).expand(height, width).reshape(1, height * width, 1), numbers)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """uint8 (n, C=3, T, H, W) -> float32 (n, 1, T, H, W): torchvision's luma, floored as for uint8 images."""
    r, g, b = x.unbind(dim=1)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).floor_().unsqueeze(1)


def _blend(x: torch.Tensor, degenerate: torch.Tensor, v: _Views, g: OpGroup) -> torch.Tensor:
    """torchvision's _blend with per-clip (ratio, 1 - ratio): x * ratio + degenerate * (1 - ratio), clamped,
    truncated to uint8 (addcmul rounds like add(alpha=...))."""
    factors = _per_clip(v.floats[g.data:], x.shape[0], 2)
    out = x.mul(factors[:, :1]).addcmul_(degenerate, factors[:, 1:])
    return out.clamp_(0, 255).to(torch.uint8)


def _brightness(x: torch.Tensor, v: _Views, g: OpGroup) -> torch.Tensor:
    return x.mul(_per_clip(v.floats[g.data:], x.shape[0])).clamp_(0, 255).to(torch.uint8)


def _color(x: torch.Tensor, v: _Views, g: OpGroup) -> torch.Tensor:
    return _blend(x, _grey(x), v, g)


def _contrast(x: torch.Tensor, v: _Views, g: OpGroup) -> torch.Tensor:
    return _blend(x, _grey(x).mean(dim=(-2, -1), keepdim=True), v, g)  # the mean grey of each frame


def _sharpness(x: torch.Tensor, v: _Views, g: OpGroup) -> torch.Tensor:
    """torchvision's adjust_sharpness: blend with PIL's smoothing (the [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13
    kernel, rounded) inside a kept 1-pixel border. The weighted sum S is exact in int16 and S / 13 is at least
    1/26 from a rounding tie, so round(S / 13) in float32 is what torchvision's float32 convolution rounds to
    (and cuDNN's TF32 cannot change it, unlike a convolution's)."""
    n, h, w = x.shape[0], *x.shape[-2:]
    if h <= 2 or w <= 2:
        return x
    xi = x.to(torch.int16)
    rows = xi[..., :-2] + xi[..., 1:-1] + xi[..., 2:]
    weighted = (rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :]).add_(xi[..., 1:-1, 1:-1], alpha=4)
    blurred = weighted.float().div_(13).round_()  # S <= 13 * 255 exact in float32; the quotient is no tie
    out = x.float()
    inner = out[..., 1:-1, 1:-1]
    inner.addcmul_(blurred.sub_(inner), _per_clip(v.floats[g.data:], n))  # torchvision's add_(alpha=1 - f)
    return out.clamp_(0, 255).to(torch.uint8)


def _posterize(x: torch.Tensor, v: _Views, g: OpGroup) -> torch.Tensor:
    return x & _per_clip(v.bytes[g.data:], x.shape[0])


def _solarize(x: torch.Tensor, v: _Views, g: OpGroup) -> torch.Tensor:
    return torch.where(x >= _per_clip(v.bytes[g.data:], x.shape[0]), x.bitwise_not(), x)


def _autocontrast(x: torch.Tensor, v: _Views, g: OpGroup) -> torch.Tensor:
    """torchvision's autocontrast per frame and channel, with torch.where for its masked assignments."""
    xf = x.float()
    low, high = xf.amin(dim=(-2, -1), keepdim=True), xf.amax(dim=(-2, -1), keepdim=True)
    flat = high == low
    inv_scale = torch.where(flat, 1.0, (high - low).mul_(1.0 / 255))
    return xf.sub_(torch.where(flat, 0.0, low)).div_(inv_scale).clamp_(0, 255).to(torch.uint8)


def _equalize(x: torch.Tensor, v: _Views, g: OpGroup) -> torch.Tensor:
    return TF.equalize(x)  # per (H, W) plane over any leading dims, from device-side ops only


_KERNELS: dict[str, Callable[[torch.Tensor, _Views, OpGroup], torch.Tensor]] = {
    "affine": _affine, "Brightness": _brightness, "Color": _color, "Contrast": _contrast,
    "Sharpness": _sharpness, "Posterize": _posterize, "Solarize": _solarize, "AutoContrast": _autocontrast,
    "Equalize": _equalize,
}
