"""Batch-level MixUp / CutMix with label smoothing."""
from __future__ import annotations

import torch

from vmb.config import load_config
from vmb.engine.mixup import build_mixup


def test_disabled_by_default():
    assert build_mixup(load_config(None)) is None


def test_mix_shapes_and_soft_labels():
    cfg = load_config(None, ["MIXUP.ENABLE", "True", "MODEL.LOSS_FUNC", "soft_cross_entropy",
                             "MODEL.NUM_CLASSES", "5", "MIXUP.LABEL_SMOOTH_VALUE", "0.1"])
    mix = build_mixup(cfg)
    torch.manual_seed(0)
    clips = torch.randn(4, 3, 2, 8, 8)  # (N, C, T, H, W)
    labels = torch.tensor([0, 1, 2, 4])
    for _ in range(6):  # MixUp or CutMix, chosen at random
        mixed, soft = mix(clips, labels)
        assert mixed.shape == clips.shape and type(mixed) is torch.Tensor
        assert soft.shape == (4, 5)
        assert torch.allclose(soft.sum(dim=1), torch.ones(4))
        assert (soft >= 0.1 / 5 - 1e-6).all()  # smoothing leaves mass on every class
        # Each clip's label mass sits on its own label and its partner's (torchvision pairs clip i with i - 1).
        own_or_partner = torch.zeros(4, 5, dtype=torch.bool)
        own_or_partner[torch.arange(4), labels] = True
        own_or_partner[torch.arange(4), labels.roll(1, 0)] = True
        assert torch.allclose(soft[~own_or_partner], torch.tensor(0.1 / 5))
    # Clips are mixed across the batch, the same way in every frame: a clip constant over time stays so.
    const = torch.randn(4, 3, 1, 8, 8).expand(4, 3, 2, 8, 8).contiguous()
    mixed, _ = mix(const, labels)
    assert torch.allclose(mixed[:, :, 0], mixed[:, :, 1])
