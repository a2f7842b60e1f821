"""TSN R50 and TSM R50: the 2D-CNN video models of the zoo (vmb.models.zoo), on torchvision's ResNet-50.

Both take the clip every zoo model takes, float (N, 3, T, H, W) with T the number of segments (one frame each),
run `torchvision.models.resnet50(weights=None)` (random weights) on each of the N * T frames and average the T
per-frame logits, TSN's segmental consensus (Wang 2016): logits (N, num_classes). TSM (Lin 2019) adds the
temporal shift module to every bottleneck block as "residual shift": on the residual branch, before conv1, 1/8 of
the channels move one segment back in time and 1/8 one segment forward (MMAction2's ResNetTSM, shift_div=8,
shift_place='blockres'). Dropout before the fc as in MMAction2's heads: TSNHead 0.4
(configs/_base_/models/tsn_r50.py), TSMHead 0.5 (configs/_base_/models/tsm_r50.py). MMAction2's TSNHead averages
the pooled features before its fc; the fc being linear, that equals the mean of the per-frame logits in eval mode.

Views and published test protocols (MMAction2's Kinetics-400 model zoo):
- TSN R50 1x1x3 (tsn_imagenet-pretrained-r50_8xb32-1x1x3-100e_kinetics400-rgb): trained on 3 segments at
  224 x 224, tested on 25 segments x 10 crops (ten-crop 224 of a 256 short side). The zoo's view is one training
  view, 3 x 224 x 224; TSN takes any number of segments.
- TSM R50 1x1x8 (tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb): trained and tested on 8 segments
  at 224 x 224, tested with 10 crops. The zoo's view is 8 x 224 x 224; a TSM is built for its number of segments.

The forward passes use only view, reshape, transpose, narrow, cat, zeros_like and mean around the ResNet's own
layers: all traceable by torch.jit.trace (fvcore's FLOP count) and expressible in ONNX.

On CUDA, VMB gives models and clips the channels_last_3d layout (vmb.engine.precision.memory_format), which the
ResNet's 4D convolution weights cannot take: `.to(memory_format=torch.channels_last_3d)` makes these models
channels_last, a channels_last_3d clip becomes channels_last frames without a copy, and the shift keeps the
layout of its input.
"""
from __future__ import annotations

from typing import Any

import torch
import torchvision
from torch import nn

TSN_DROPOUT = 0.4  # MMAction2 configs/_base_/models/tsn_r50.py: TSNHead dropout_ratio
TSM_DROPOUT = 0.5  # MMAction2 configs/_base_/models/tsm_r50.py: TSMHead dropout_ratio
TSN_R50_SEGMENTS = 3  # TSN R50 1x1x3: the zoo's view (TSN itself takes any number of segments)
TSM_R50_SEGMENTS = 8  # TSM R50 1x1x8
SHIFT_DIV = 8  # 1/8 of the channels shift back, 1/8 forward (MMAction2 ResNetTSM shift_div)


class TSN(nn.Module):
    """A 2D ResNet applied to every frame, its per-frame logits averaged over the segments."""

    def __init__(self, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.resnet = torchvision.models.resnet50(weights=None)
        self.resnet.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.resnet.fc.in_features, num_classes))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """clips (N, 3, T, H, W) -> logits (N, num_classes): the mean over T of the frames' logits."""
        n, c, t, h, w = clips.shape
        frames = clips.transpose(1, 2).reshape(n * t, c, h, w)  # (N * T, 3, H, W), clip by clip
        return self.resnet(frames).view(n, t, -1).mean(dim=1)

    def to(self, *args: Any, **kwargs: Any) -> TSN:
        """`nn.Module.to`, with memory_format=torch.channels_last_3d meaning channels_last (see the module doc)."""
        if kwargs.get("memory_format") == torch.channels_last_3d:
            kwargs["memory_format"] = torch.channels_last
        return super().to(*args, **kwargs)


class TSM(TSN):
    """TSN with a temporal shift before conv1 of every bottleneck block, for clips of `num_segments` frames."""

    def __init__(self, num_classes: int, dropout: float, num_segments: int) -> None:
        super().__init__(num_classes, dropout)
        self.num_segments = num_segments
        for stage in (self.resnet.layer1, self.resnet.layer2, self.resnet.layer3, self.resnet.layer4):
            for block in stage:
                block.conv1 = TemporalShift(block.conv1, num_segments)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """clips (N, 3, num_segments, H, W) -> logits (N, num_classes).

        Raises:
            ValueError: clips of another number of frames (the shift would mix segments of different clips);
                not checked under torch.jit.trace, which records the shapes of its example input.
        """
        if not torch.jit.is_tracing() and clips.shape[2] != self.num_segments:
            raise ValueError(f"this TSM takes clips of {self.num_segments} frames, got {clips.shape[2]}")
        return super().forward(clips)


class TemporalShift(nn.Module):
    """`temporal_shift` of the frames, then `net` (a block's conv1)."""

    def __init__(self, net: nn.Module, num_segments: int) -> None:
        super().__init__()
        self.net = net
        self.num_segments = num_segments

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (N * T, C, H, W) -> net(shifted frames)."""
        return self.net(temporal_shift(frames, self.num_segments))


def temporal_shift(frames: torch.Tensor, num_segments: int, shift_div: int = SHIFT_DIV) -> torch.Tensor:
    """Shift channels in time within each clip: (N * T, C, H, W), clip by clip, -> (N * T, C, H, W).

    With fold = C // shift_div, channels [0, fold) move one segment back (segment t takes segment t + 1's, the
    last segment takes zeros), channels [fold, 2 * fold) one segment forward (segment t takes t - 1's, the first
    takes zeros), and the other channels stay. The output has the layout of `frames` (contiguous or
    channels_last).
    """
    nt, c, h, w = frames.shape
    fold = c // shift_div
    # The 5D view with time and channels in the frames' memory order: (N, T, C, H, W) for contiguous frames,
    # (N, C, T, H, W) (laid out as channels_last_3d) for channels_last ones; torch.cat keeps the layout its inputs
    # share, so the shifted copy is written once, in the frames' layout.
    channels_last = frames.is_contiguous(memory_format=torch.channels_last) and not frames.is_contiguous()
    time_dim, channel_dim = (2, 1) if channels_last else (1, 2)
    clips = frames.view(-1, num_segments, c, h, w)
    if channels_last:
        clips = clips.transpose(1, 2)
    back, forward = clips.narrow(channel_dim, 0, fold), clips.narrow(channel_dim, fold, fold)
    zeros = torch.zeros_like(back.narrow(time_dim, 0, 1))
    shifted = torch.cat((
        torch.cat((back.narrow(time_dim, 1, num_segments - 1), zeros), dim=time_dim),
        torch.cat((zeros, forward.narrow(time_dim, 0, num_segments - 1)), dim=time_dim),
        clips.narrow(channel_dim, 2 * fold, c - 2 * fold),
    ), dim=channel_dim)
    if channels_last:
        shifted = shifted.transpose(1, 2)
    return shifted.reshape(nt, c, h, w)


def tsn_r50(num_classes: int = 400) -> TSN:
    """TSN R50 (MMAction2's tsn_r50, Kinetics-400 head by default), random weights."""
    return TSN(num_classes, TSN_DROPOUT)


def tsm_r50(num_classes: int = 400) -> TSM:
    """TSM R50 1x1x8 (MMAction2's tsm_r50: 8 segments), random weights."""
    return TSM(num_classes, TSM_DROPOUT, TSM_R50_SEGMENTS)
