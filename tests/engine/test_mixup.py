"""Batch-level MixUp / CutMix with label smoothing, drawn per (seed, step)."""
from __future__ import annotations

import torch

from vmb.config import load_config
from vmb.engine.mixup import build_mixup

NUM_CLASSES, SMOOTH = 5, 0.1


def mixup(seed: int = 0):
    return build_mixup(load_config(None, ["MIXUP.ENABLE", "True", "MODEL.NUM_CLASSES", str(NUM_CLASSES),
                                          "MIXUP.LABEL_SMOOTH_VALUE", str(SMOOTH), "RNG_SEED", str(seed)]))


def constant_clips(values: list[float]) -> torch.Tensor:
    """(N, 3, 2, 8, 8) clips, clip i filled with values[i]."""
    return torch.tensor(values).view(-1, 1, 1, 1, 1).expand(-1, 3, 2, 8, 8).contiguous()


def draw(mix, values: list[float], labels: list[int], step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What `mix` drew at `step`, read back from constant clips: (per-clip weight of its own clip at each
    pixel (N, 3, 2, 8, 8): lambda everywhere for MixUp, 1 outside and 0 inside the box for CutMix; the
    label weight of its own label (N,)). Each clip's partner (the previous clip) must differ from it."""
    clips, labels_t = constant_clips(values), torch.tensor(labels)
    mixed, soft = mix(clips, labels_t, step)
    partner = clips.roll(1, 0)
    own_label = (soft[torch.arange(len(labels)), labels_t] - SMOOTH / NUM_CLASSES) / (1 - SMOOTH)
    return (mixed - partner) / (clips - partner), own_label


def is_cutmix(weights: torch.Tensor) -> bool:
    return bool(((weights == 0) | (weights == 1)).all())


def test_disabled_by_default():
    assert build_mixup(load_config(None)) is None


def test_mix_shapes_and_soft_labels():
    mix = mixup()
    clips = torch.randn(4, 3, 2, 8, 8)  # (N, C, T, H, W)
    labels = torch.tensor([0, 1, 2, 4])
    for step in range(6):  # MixUp or CutMix, as drawn for the step
        mixed, soft = mix(clips, labels, step)
        assert mixed.shape == clips.shape and type(mixed) is torch.Tensor
        assert soft.shape == (4, NUM_CLASSES)
        assert torch.allclose(soft.sum(dim=1), torch.ones(4))
        # Each clip's label mass sits on its own label and its partner's (torchvision pairs clip i with i - 1);
        # smoothing leaves SMOOTH / K on every other class.
        own_or_partner = torch.zeros(4, NUM_CLASSES, dtype=torch.bool)
        own_or_partner[torch.arange(4), labels] = True
        own_or_partner[torch.arange(4), labels.roll(1, 0)] = True
        assert torch.allclose(soft[~own_or_partner], torch.tensor(SMOOTH / NUM_CLASSES))
        assert (soft[own_or_partner] >= SMOOTH / NUM_CLASSES - 1e-6).all()
    # Clips are mixed across the batch, the same way in every frame: a clip constant over time stays so.
    const = torch.randn(4, 3, 1, 8, 8).expand(4, 3, 2, 8, 8).contiguous()
    mixed, _ = mix(const, labels, 0)
    assert torch.allclose(mixed[:, :, 0], mixed[:, :, 1])


def test_label_smoothing_without_mixing_mass():
    """A clip mixed with one of its own class keeps 1 - SMOOTH + SMOOTH / K on it, SMOOTH / K elsewhere."""
    _, soft = mixup()(torch.randn(3, 3, 2, 8, 8), torch.tensor([2, 2, 2]), 0)
    expected = torch.full((3, NUM_CLASSES), SMOOTH / NUM_CLASSES)
    expected[:, 2] += 1 - SMOOTH
    assert torch.allclose(soft, expected)


def test_same_step_same_draw_on_every_process():
    """Two processes' different sub-batches (here also of different sizes), mixed at the same step, get the
    same choice, lambda and box: the draw depends on (seed, step) only."""
    mix = mixup()
    kinds = set()
    for step in range(12):
        weights_a, own_a = draw(mix, [0.0, 1.0], [0, 1], step)
        weights_b, own_b = draw(mix, [10.0, 30.0, 20.0, 50.0], [3, 4, 2, 1], step)
        assert torch.allclose(weights_a[0], weights_a[1])
        assert torch.allclose(weights_b, weights_a[:1].expand(4, -1, -1, -1, -1))
        assert torch.allclose(own_a, own_a[0]) and torch.allclose(own_b, own_a[0])
        # The label weight is the share of the clip's own pixels (lambda, or 1 - the box's area).
        assert torch.allclose(own_a[0], weights_a[0].mean())
        kinds.add(is_cutmix(weights_a))
    assert kinds == {False, True}  # both MixUp and CutMix were drawn over these steps


def test_steps_and_seeds_draw_differently():
    lambdas = {seed: [draw(mixup(seed), [0.0, 1.0], [0, 1], step)[1][0].item() for step in range(8)]
               for seed in (0, 1)}
    assert len(set(lambdas[0])) == 8  # every step its own draw
    assert lambdas[0] != lambdas[1]
    assert lambdas[0] == [draw(mixup(0), [0.0, 1.0], [0, 1], step)[1][0].item() for step in range(8)]


def test_pairing_within_each_process():
    """The module docstring's limitation: with W processes global clip g is mixed with clip g - W (process r
    holds clips r, r + W, ...), with one process with clip g - 1."""
    values = [1.0, 2.0, 4.0, 8.0]  # the global batch
    mix = mixup()
    step, lam = next((s, own[0]) for s, (weights, own) in enumerate(draw(mix, [0.0, 1.0], [0, 1], s)
                                                                     for s in range(20)) if not is_cutmix(weights))
    one, _ = mix(constant_clips(values), torch.tensor([0, 1, 2, 3]), step)
    assert torch.allclose(one[:, 0, 0, 0, 0], lam * torch.tensor(values) + (1 - lam) * torch.tensor(values).roll(1))
    for rank in (0, 1):
        shard = values[rank::2]
        two, _ = mix(constant_clips(shard), torch.tensor([0, 1]), step)
        assert torch.allclose(two[:, 0, 0, 0, 0], lam * torch.tensor(shard) + (1 - lam) * torch.tensor(shard).roll(1))


def test_global_generator_untouched():
    """Mixing neither consumes nor reseeds torch's CPU generator, which the run's dropout draws from."""
    mix, clips = mixup(), torch.randn(4, 3, 2, 8, 8)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    mix(clips, torch.tensor([0, 1, 2, 3]), 7)
    assert torch.equal(torch.get_rng_state(), state)
