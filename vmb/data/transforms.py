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

from vmb.data.video import Box, Geometry, scaled_size


def to_cthw(frames: torch.Tensor) -> torch.Tensor:
    """(T, H, W, C) -> (C, T, H, W), contiguous."""
    return frames.permute(3, 0, 1, 2).contiguous()


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


def uniform_crop_geometry(size: int, index: int, num_crops: int) -> Geometry:
    """Test crop `index` of `num_crops` (PySlowFast's uniform_crop): scale the short side to `size` and keep
    the `size` x `size` window at evenly spaced places along the long side (3 crops: left, centre, right, or
    top, centre, bottom for a portrait frame). One crop, or the middle of three, is `center_crop_geometry`."""

    def geometry(width: int, height: int) -> tuple[Box, tuple[int, int]]:
        side = min(width, height)
        slack = max(width, height) - side
        offset = slack // 2 if num_crops == 1 else slack * index // (num_crops - 1)
        box = Box(offset, 0, side, side) if width >= height else Box(0, offset, side, side)
        return box, (size, size)

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


def normalize(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float],
              memory_format: torch.memory_format = torch.preserve_format) -> torch.Tensor:
    """uint8 (N, C, T, H, W) -> float32 (N, C, T, H, W) in `memory_format`: (x / 255 - mean) / std per channel."""
    mean_t, std_t = _channel_constants(tuple(mean), tuple(std), batch.device)
    # In place on the new float copy, made in the wanted layout: one allocation, not three or four.
    return batch.to(torch.float32, memory_format=memory_format).sub_(mean_t).div_(std_t)


@functools.lru_cache(maxsize=16)
def _channel_constants(mean: tuple[float, ...], std: tuple[float, ...],
                       device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """255 * mean and 255 * std as (1, C, 1, 1, 1) tensors on `device`, built once per device: building them
    per batch would be a blocking host-to-device copy, a CPU-GPU sync, on every training step."""
    return (torch.tensor(mean, device=device).view(1, -1, 1, 1, 1) * 255.0,
            torch.tensor(std, device=device).view(1, -1, 1, 1, 1) * 255.0)
