"""RandAugment and random erasing (MViT recipe), drawn in the data loader and applied on the training device.

On the CPU these ops cost more than decoding a clip (about 20 ms per 16x224x224 clip on one core, against
about 25 ms to decode and crop it), so a data-loader worker only *draws* them: `draw_clip_augment` turns the
sample's generator into a small integer tensor of parameters that travels with the clip, and the training
loop calls `apply_clip_augment` on the device-resident uint8 batch. A sample's augmentation therefore
depends on its own (seed, epoch, index) generator only, as before, not on the device or the process count;
only the erasing noise is drawn on the device (from a generator seeded by the parameters), so its pixel
values differ between CPU and CUDA runs.

Magnitudes follow timm's RandAugment as PySlowFast's "rand-m7-n4-mstd0.5" uses it: a level in [0, 10]
(10 = each op's full range) drawn per op from N(magnitude, magnitude_std), each of the n ops applied with
probability 0.5; the ops and their ranges are torchvision's RandAugment (Identity instead of timm's Invert,
no SolarizeAdd). The same op and level apply to every frame of a clip.

Parameter layout per sample (int64): for each of the `num_ops` ops `[applied, op, level_bin, negated]`,
then `[erased, top, left, height, width, noise_seed]`.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

RAND_MAX_LEVEL = 10.0
LEVEL_BINS = 101  # levels at a resolution of 0.1 on timm's 0-10 scale
RAND_OP_PROB = 0.5  # timm applies each of the num_ops ops with this probability
_OP_FIELDS, _ERASE_FIELDS = 4, 6


def _affine(frames: torch.Tensor, **kwargs) -> torch.Tensor:
    args = dict(angle=0.0, translate=[0, 0], scale=1.0, shear=[0.0, 0.0],
                interpolation=InterpolationMode.NEAREST, fill=None)
    args.update(kwargs)
    return TF.affine(frames, **args)


# name -> (magnitude at full level for a (height, width) frame, signed, op(frames, magnitude)); torchvision's
# RandAugment ranges: shear 0.3, translate 150/331 of the side, rotate 30 degrees, enhance 0.9,
# posterize 8 -> 4 bits, solarize threshold 1.0 -> 0.0 of the range.
_OPS: dict[str, tuple[Callable[[int, int], float], bool, Callable[[torch.Tensor, float], torch.Tensor]]] = {
    "Identity": (lambda h, w: 0.0, False, lambda x, m: x),
    "ShearX": (lambda h, w: 0.3, True,
               lambda x, m: _affine(x, shear=[math.degrees(math.atan(m)), 0.0], center=[0, 0])),
    "ShearY": (lambda h, w: 0.3, True,
               lambda x, m: _affine(x, shear=[0.0, math.degrees(math.atan(m))], center=[0, 0])),
    "TranslateX": (lambda h, w: 150.0 / 331.0 * w, True, lambda x, m: _affine(x, translate=[int(m), 0])),
    "TranslateY": (lambda h, w: 150.0 / 331.0 * h, True, lambda x, m: _affine(x, translate=[0, int(m)])),
    "Rotate": (lambda h, w: 30.0, True, lambda x, m: TF.rotate(x, m, interpolation=InterpolationMode.NEAREST)),
    "Brightness": (lambda h, w: 0.9, True, lambda x, m: TF.adjust_brightness(x, 1.0 + m)),
    "Color": (lambda h, w: 0.9, True, lambda x, m: TF.adjust_saturation(x, 1.0 + m)),
    "Contrast": (lambda h, w: 0.9, True, lambda x, m: TF.adjust_contrast(x, 1.0 + m)),
    "Sharpness": (lambda h, w: 0.9, True, lambda x, m: TF.adjust_sharpness(x, 1.0 + m)),
    "Posterize": (lambda h, w: 4.0, False, lambda x, m: TF.posterize(x, int(round(8 - m)))),
    "Solarize": (lambda h, w: 1.0, False, lambda x, m: TF.solarize(x, 255.0 * (1.0 - m))),
    "AutoContrast": (lambda h, w: 0.0, False, lambda x, m: TF.autocontrast(x)),
    "Equalize": (lambda h, w: 0.0, False, lambda x, m: TF.equalize(x)),
}
OP_NAMES = tuple(_OPS)


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
    full, signed, _ = _OPS[OP_NAMES[op]]
    magnitude = full(height, width) * level_bin / (LEVEL_BINS - 1)
    return -magnitude if signed and negated else magnitude


def apply_clip_augment(clips: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Apply each clip's drawn ops to a uint8 batch (N, C, T, H, W) on any device; `params` (N, P) on the CPU.

    The parameters are read on the host (they never leave it), so drawing them adds no device synchronisation.
    Known defect on CUDA: torchvision's kernels for ShearX/Y, TranslateX/Y, Rotate and Sharpness build a small
    tensor with torch.tensor(..., device=cuda), a blocking copy per clip and op (tests/engine/test_cuda.py keeps
    it visible as strict xfails); the other ops and erasing do not sync.
    """
    if params.shape[1] == 0:
        return clips
    num_ops = (params.shape[1] - (_ERASE_FIELDS if params.shape[1] % _OP_FIELDS else 0)) // _OP_FIELDS
    height, width = clips.shape[-2:]
    out = []
    for clip, row in zip(clips, params.tolist()):
        frames = clip.permute(1, 0, 2, 3)  # (T, C, H, W): torchvision treats leading dims as a batch
        for k in range(num_ops):
            applied, op, level_bin, negated = row[_OP_FIELDS * k:_OP_FIELDS * (k + 1)]
            if applied:
                frames = _OPS[OP_NAMES[op]][2](frames, op_magnitude(op, level_bin, bool(negated), height, width))
        clip = frames.permute(1, 0, 2, 3)
        erase = row[_OP_FIELDS * num_ops:]
        if erase and erase[0]:
            clip = _erase(clip, *erase[1:])
        out.append(clip)
    return torch.stack(out).contiguous()


def _erase(clip: torch.Tensor, top: int, left: int, h: int, w: int, seed: int) -> torch.Tensor:
    """Fill the box with uniform noise, the same in every frame of a (C, T, H, W) uint8 clip."""
    generator = torch.Generator(device=clip.device).manual_seed(seed)
    noise = torch.randint(0, 256, (clip.shape[0], 1, h, w), generator=generator, device=clip.device,
                          dtype=torch.uint8)
    clip = clip.clone()
    clip[..., top:top + h, left:left + w] = noise
    return clip
