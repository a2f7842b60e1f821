"""The per-clip reference for vmb.data.augment.apply_clip_augment: its previous implementation, clip by clip and
op by op through torchvision's transforms.v2.functional kernels (on CUDA six of them sync once per clip and op:
the reason it was replaced). Used by tests/data/test_augment.py and benchmarks/randaugment.py.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from vmb.data.augment import OP_NAMES, op_magnitude

_OP_FIELDS, _ERASE_FIELDS = 4, 6


def _affine(frames: torch.Tensor, **kwargs) -> torch.Tensor:
    args = dict(angle=0.0, translate=[0, 0], scale=1.0, shear=[0.0, 0.0],
                interpolation=InterpolationMode.NEAREST, fill=None)
    args.update(kwargs)
    return TF.affine(frames, **args)


# name -> op(frames (T, C, H, W) uint8, signed magnitude from op_magnitude), as the previous implementation had it.
REFERENCE_OPS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "Identity": lambda x, m: x,
    "ShearX": lambda x, m: _affine(x, shear=[math.degrees(math.atan(m)), 0.0], center=[0, 0]),
    "ShearY": lambda x, m: _affine(x, shear=[0.0, math.degrees(math.atan(m))], center=[0, 0]),
    "TranslateX": lambda x, m: _affine(x, translate=[int(m), 0]),
    "TranslateY": lambda x, m: _affine(x, translate=[0, int(m)]),
    "Rotate": lambda x, m: TF.rotate(x, m, interpolation=InterpolationMode.NEAREST),
    "Brightness": lambda x, m: TF.adjust_brightness(x, 1.0 + m),
    "Color": lambda x, m: TF.adjust_saturation(x, 1.0 + m),
    "Contrast": lambda x, m: TF.adjust_contrast(x, 1.0 + m),
    "Sharpness": lambda x, m: TF.adjust_sharpness(x, 1.0 + m),
    "Posterize": lambda x, m: TF.posterize(x, int(round(8 - m))),
    "Solarize": lambda x, m: TF.solarize(x, 255.0 * (1.0 - m)),
    "AutoContrast": lambda x, m: TF.autocontrast(x),
    "Equalize": lambda x, m: TF.equalize(x),
}
assert tuple(REFERENCE_OPS) == OP_NAMES


def reference_apply_clip_augment(clips: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, T, H, W) and params (N, P) in vmb.data.augment's layout -> uint8 (N, C, T, H, W), one clip
    and one op at a time."""
    if params.shape[1] == 0:
        return clips
    num_ops = (params.shape[1] - (_ERASE_FIELDS if params.shape[1] % _OP_FIELDS else 0)) // _OP_FIELDS
    height, width = clips.shape[-2:]
    out = []
    for clip, row in zip(clips, params.tolist(), strict=True):
        frames = clip.permute(1, 0, 2, 3)  # (T, C, H, W): torchvision treats leading dims as a batch
        for k in range(num_ops):
            applied, op, level_bin, negated = row[_OP_FIELDS * k:_OP_FIELDS * (k + 1)]
            if applied:
                magnitude = op_magnitude(op, level_bin, bool(negated), height, width)
                frames = REFERENCE_OPS[OP_NAMES[op]](frames, magnitude)
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
