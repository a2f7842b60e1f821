"""Spatial transforms for clips, in plain torch ops (pytorchvideo.transforms does not import on current
torchvision). Clips stay uint8 in the data loader; `normalize` runs on the training device.

Crops and resizes are not applied to decoded frames: the `*_geometry` functions choose the source box and
output size, and the decoder (vmb/data/video.py) converts only those pixels. The tensor ops below them
act on decoded clips. Shapes: a clip is (T, H, W, C) uint8 as decoded, or (C, T, H, W) once `to_cthw` has run.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vmb.data.video import Box, Geometry, scaled_size


def to_cthw(frames: torch.Tensor) -> torch.Tensor:
    """(T, H, W, C) -> (C, T, H, W), contiguous."""
    return frames.permute(3, 0, 1, 2).contiguous()


def random_crop(clip: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    """Crop a random `size` x `size` window from a (C, T, H, W) clip."""
    height, width = clip.shape[-2:]
    top = int(rng.integers(0, height - size + 1))
    left = int(rng.integers(0, width - size + 1))
    return clip[..., top:top + size, left:left + size]


def center_crop(clip: torch.Tensor, size: int) -> torch.Tensor:
    """Crop the central `size` x `size` window from a (C, T, H, W) clip."""
    height, width = clip.shape[-2:]
    top, left = (height - size) // 2, (width - size) // 2
    return clip[..., top:top + size, left:left + size]


def horizontal_flip(clip: torch.Tensor, rng: np.random.Generator, prob: float = 0.5) -> torch.Tensor:
    """Mirror a (C, T, H, W) clip left-right with probability `prob`."""
    return clip.flip(-1) if rng.random() < prob else clip


def _square_in_scaled(width: int, height: int, short_side: int, size: int, top: int, left: int) -> Box:
    """The source box that becomes the `size` x `size` window at (top, left) of the frame scaled to
    `short_side` (the same pixels, before scaling)."""
    scale = short_side / min(width, height)
    side = min(round(size / scale), width, height)
    x = min(round(left / scale), width - side)
    y = min(round(top / scale), height - side)
    return Box(x, y, side, side)


def center_crop_geometry(size: int) -> Geometry:
    """Validation view: the central square of the short side (what scaling the short side to `size` and
    cropping the central `size` x `size` keeps), resized to `size` x `size`."""

    def geometry(width: int, height: int) -> tuple[Box, tuple[int, int]]:
        side = min(width, height)
        return Box((width - side) // 2, (height - side) // 2, side, side), (size, size)

    return geometry


def jitter_crop_geometry(scales: Sequence[int], size: int, rng: np.random.Generator) -> Geometry:
    """X3D training view: scale the short side to a random integer in `scales` (inclusive), keep a random
    `size` x `size` window."""

    def geometry(width: int, height: int) -> tuple[Box, tuple[int, int]]:
        short_side = int(rng.integers(scales[0], scales[1] + 1))
        scaled_w, scaled_h = scaled_size(width, height, short_side)
        top = int(rng.integers(0, max(0, scaled_h - size) + 1))
        left = int(rng.integers(0, max(0, scaled_w - size) + 1))
        return _square_in_scaled(width, height, short_side, size, top, left), (size, size)

    return geometry


def random_resized_crop_geometry(size: int, scale: Sequence[float], ratio: Sequence[float],
                                 rng: np.random.Generator, attempts: int = 10) -> Geometry:
    """Inception-style training view (MViT): a box with a random area fraction in `scale` and aspect ratio
    in `ratio`, resized to `size` x `size`; after `attempts` misses, the central square of the short side."""
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))

    def geometry(width: int, height: int) -> tuple[Box, tuple[int, int]]:
        area = width * height
        for _ in range(attempts):
            target_area = area * rng.uniform(scale[0], scale[1])
            aspect = math.exp(rng.uniform(*log_ratio))
            w = round(math.sqrt(target_area * aspect))
            h = round(math.sqrt(target_area / aspect))
            if 0 < w <= width and 0 < h <= height:
                top = int(rng.integers(0, height - h + 1))
                left = int(rng.integers(0, width - w + 1))
                return Box(left, top, w, h), (size, size)
        side = min(width, height)
        return Box((width - side) // 2, (height - side) // 2, side, side), (size, size)

    return geometry


def short_side_scale(clip: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a (C, T, H, W) uint8 clip so its short side is `size`, keeping the aspect ratio."""
    height, width = clip.shape[-2:]
    if min(height, width) == size:
        return clip
    if width < height:
        new_h, new_w = round(height * size / width), size
    else:
        new_h, new_w = size, round(width * size / height)
    resized = F.interpolate(clip.float(), size=(new_h, new_w), mode="bilinear", align_corners=False,
                            antialias=True)
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def normalize(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (N, C, T, H, W) -> float (N, C, T, H, W): (x / 255 - mean) / std per channel."""
    mean_t, std_t = _channel_constants(tuple(mean), tuple(std), batch.device)
    return (batch.float() - mean_t) / std_t


@functools.lru_cache(maxsize=16)
def _channel_constants(mean: tuple[float, ...], std: tuple[float, ...],
                       device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """255 * mean and 255 * std as (1, C, 1, 1, 1) tensors on `device`, built once per device: building them
    per batch would be a blocking host-to-device copy, a CPU-GPU sync, on every training step."""
    return (torch.tensor(mean, device=device).view(1, -1, 1, 1, 1) * 255.0,
            torch.tensor(std, device=device).view(1, -1, 1, 1, 1) * 255.0)
