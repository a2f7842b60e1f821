"""Batch-level MixUp / CutMix with label smoothing (torchvision.transforms.v2), on the training device."""
from __future__ import annotations

from typing import Callable

import torch
from fvcore.common.config import CfgNode
from torchvision import tv_tensors
from torchvision.transforms import v2

MixFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def build_mixup(cfg: CfgNode) -> MixFn | None:
    """`(clips (N, C, T, H, W), labels (N,)) -> (mixed clips, soft labels (N, K))`, or None if MIXUP is off.

    Each batch is mixed by MixUp or CutMix (chosen at random), then labels are smoothed by
    MIXUP.LABEL_SMOOTH_VALUE.
    """
    if not cfg.MIXUP.ENABLE:
        return None
    num_classes, smoothing = cfg.MODEL.NUM_CLASSES, cfg.MIXUP.LABEL_SMOOTH_VALUE
    choice = v2.RandomChoice([v2.MixUp(alpha=cfg.MIXUP.ALPHA, num_classes=num_classes),
                              v2.CutMix(alpha=cfg.MIXUP.CUTMIX_ALPHA, num_classes=num_classes)])

    def mix(clips: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        video = tv_tensors.Video(clips.transpose(1, 2))  # torchvision's video layout is (N, T, C, H, W)
        mixed, soft = choice(video, labels)
        soft = soft * (1.0 - smoothing) + smoothing / num_classes
        return mixed.as_subclass(torch.Tensor).transpose(1, 2), soft

    return mix
