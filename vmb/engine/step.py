"""One training step of the timed loop, shared by the trainer and bench_train: the batch made ready on the device
(`model_input`), and the optimisation step (`train_step`).

Per step the input costs one float copy of the batch, made in the model's layout (`vmb.engine.precision.
memory_format`: channels_last_3d on CUDA), plus what MixUp/CutMix itself needs; no step makes the host wait for
the device, except a GradScaler in use (fp16 AMP), whose inf/NaN check is read on the host in `scaler.step`.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Sequence

import torch
import torch.nn.functional as F

from vmb.data.augment import apply_clip_augment
from vmb.data.transforms import normalize
from vmb.engine.mixup import MixFn
from vmb.engine.precision import memory_format


def model_input(clips: torch.Tensor, labels: torch.Tensor, augment: torch.Tensor, step: int, device: torch.device,
                mean: Sequence[float], std: Sequence[float],
                mixup: MixFn | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A loader's batch ready for the model on `device`.

    Args:
        clips: uint8 (N, C, T, H, W), on the host (pinned on CUDA) or already on `device` (device decoding).
        labels: int64 (N,).
        augment: int64 (N, P) RandAugment / erasing parameters on the host (vmb.data.augment; P may be 0).
        step: the run's global step, from 0 (MixUp's draw).

    Returns:
        float32 clips (N, C, T, H, W) in `memory_format(device)`, and labels: int64 (N,), or float (N, K) soft
        labels with MixUp.
    """
    layout = memory_format(device)
    clips = normalize(apply_clip_augment(clips.to(device, non_blocking=True), augment), mean, std, layout)
    labels = labels.to(device, non_blocking=True)
    if mixup is not None:  # the same MixUp/CutMix draw on every process for a step (engine/mixup.py)
        clips, labels = mixup(clips, labels, step)
    return clips, labels


def train_step(model: torch.nn.Module, clips: torch.Tensor, labels: torch.Tensor, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, autocast: AbstractContextManager, clip_norm: float) -> torch.Tensor:
    """One optimisation step on `model_input`'s output; returns the loss as a device tensor (no host sync, but
    for a GradScaler in use: see the module docstring)."""
    with autocast:
        loss = F.cross_entropy(model(clips), labels)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if clip_norm > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()
