"""The step's input (vmb.engine.step.model_input): normalised, augmented and mixed on the device, in the model's
layout; MixUp and CutMix keep channels_last_3d (on CUDA a lost layout costs a conversion in the first
convolution)."""
from __future__ import annotations

import pytest
import torch

from vmb.config import load_config
from vmb.data.transforms import normalize
from vmb.engine import step
from vmb.engine.mixup import build_mixup

MEAN, STD = [0.45] * 3, [0.225] * 3


def mixup_cfg():
    return load_config("configs/MVIT_B_16x4.yaml", ["MODEL.NUM_CLASSES", "5"])


def test_mixup_and_cutmix_keep_the_layout():
    """Over enough steps that both MixUp and CutMix are drawn: a channels_last_3d batch stays channels_last_3d, a
    contiguous one contiguous, and the values are those of mixing the contiguous copy."""
    mix = build_mixup(mixup_cfg())
    clips = torch.randn(4, 3, 4, 8, 8)
    labels = torch.tensor([0, 1, 2, 3])
    channels_last = clips.contiguous(memory_format=torch.channels_last_3d)
    changed_layouts = 0
    for index in range(8):
        mixed, soft = mix(channels_last, labels, index)
        plain, plain_soft = mix(clips, labels, index)
        assert mixed.is_contiguous(memory_format=torch.channels_last_3d)
        assert plain.is_contiguous()
        assert torch.equal(mixed, plain) and torch.equal(soft, plain_soft)
        changed_layouts += not torch.equal(mixed, channels_last)
    assert changed_layouts == 8  # every step mixed


def test_normalize_writes_the_wanted_layout():
    batch = torch.randint(0, 256, (2, 3, 4, 8, 8), dtype=torch.uint8)
    plain = normalize(batch, MEAN, STD)
    channels_last = normalize(batch, MEAN, STD, torch.channels_last_3d)
    assert channels_last.is_contiguous(memory_format=torch.channels_last_3d) and plain.is_contiguous()
    assert torch.equal(channels_last, plain)


@pytest.mark.parametrize("with_mixup", [False, True])
def test_model_input_is_in_the_model_s_layout(monkeypatch, with_mixup):
    """model_input with the CUDA layout (channels_last_3d), shown on the CPU: every step's clips, mixed or not."""
    monkeypatch.setattr(step, "memory_format", lambda device: torch.channels_last_3d)
    mix = build_mixup(mixup_cfg()) if with_mixup else None
    clips = torch.randint(0, 256, (4, 3, 4, 8, 8), dtype=torch.uint8)
    labels, augment = torch.tensor([0, 1, 2, 3]), torch.zeros(4, 0, dtype=torch.int64)
    for index in range(6):
        inputs, targets = step.model_input(clips, labels, augment, index, torch.device("cpu"), MEAN, STD, mix)
        assert inputs.dtype == torch.float32 and inputs.is_contiguous(memory_format=torch.channels_last_3d)
        assert targets.shape == ((4, 5) if with_mixup else (4,))
