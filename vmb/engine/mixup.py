"""Batch-level MixUp / CutMix with label smoothing (torchvision.transforms.v2), on the training device.

What a step draws (MixUp or CutMix, lambda, the CutMix box) depends only on (RNG_SEED, global step): every
process mixes its sub-batch with the same draw, whatever the process count, and a resumed run draws as an
uninterrupted one. The pairing does depend on the process count: torchvision mixes each clip with the
previous clip of the batch it is given (clip i with clip i - 1, clip 0 with the last), and each process
mixes only its own sub-batch. Process r of W holds the global batch's clips r, r + W, r + 2W, ...
(vmb.data.loader.TrainSampler), so with W processes global clip g is mixed with clip g - W (clip r with
the sub-batch's last, r + N - W, for a global batch of N), and with one process with clip g - 1. The
pairs are as random either way (the global batch is a random draw); making them identical for every W
would need an all-gather of the clips each step.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from fvcore.common.config import CfgNode
from torchvision import tv_tensors
from torchvision.transforms import v2

MixFn = Callable[[torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]


def step_seed(seed: int, step: int) -> int:
    """A 32-bit seed for `step` of a run seeded `seed` (torch's CPU generator keeps only 32 bits of a seed,
    so (seed, step) is hashed, not packed)."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


def build_mixup(cfg: CfgNode) -> MixFn | None:
    """`(clips (N, C, T, H, W), labels (N,), step) -> (mixed clips in the clips' layout, soft labels (N, K))`, or
    None if MIXUP is off; `step` is the run's global step (epoch * steps per epoch + step in the epoch, from 0).

    Each batch is mixed by MixUp or CutMix (chosen at random), then labels are smoothed by
    MIXUP.LABEL_SMOOTH_VALUE. The draw is the same for a step on every process (module docstring).
    """
    if not cfg.MIXUP.ENABLE:
        return None
    num_classes, smoothing, seed = cfg.MODEL.NUM_CLASSES, cfg.MIXUP.LABEL_SMOOTH_VALUE, cfg.RNG_SEED
    choice = v2.RandomChoice([v2.MixUp(alpha=cfg.MIXUP.ALPHA, num_classes=num_classes),
                              v2.CutMix(alpha=cfg.MIXUP.CUTMIX_ALPHA, num_classes=num_classes)])

    def mix(clips: torch.Tensor, labels: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        video = tv_tensors.Video(clips.transpose(1, 2))  # torchvision's video layout is (N, T, C, H, W)
        # torchvision draws the choice, lambda and box on the host from torch's default CPU generator and
        # takes no generator of its own: reseed that one for the call and restore it after, so that the
        # run's own draws from it (dropout and drop path on the CPU) are the same with or without MixUp.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(step_seed(seed, step))
            mixed, soft = choice(video, labels)
        soft = soft * (1.0 - smoothing) + smoothing / num_classes
        # The input's layout (channels_last_3d on CUDA): CutMix keeps it, but MixUp's roll returns a contiguous
        # tensor, which the model would convert in its first convolution anyway.
        layout = torch.channels_last_3d if clips.is_contiguous(memory_format=torch.channels_last_3d) \
            else torch.contiguous_format
        return mixed.as_subclass(torch.Tensor).transpose(1, 2).contiguous(memory_format=layout), soft

    return mix
