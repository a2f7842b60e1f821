"""Validation top-1 counts every video exactly once."""
from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from vmb.engine.evaluate import evaluate
from vmb.errors import VMBError

NUM_CLASSES = 4


class FakeVideos(Dataset):
    """Clip i is filled with its label's value (as uint8); the model reads it back."""

    def __init__(self, labels):
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        label = self.labels[index]
        return torch.full((3, 2, 4, 4), 50 * label, dtype=torch.uint8), label, 0


class LabelReader(torch.nn.Module):
    """Predicts the class encoded in the clip, except for the classes in `wrong` (predicted as 0)."""

    def __init__(self, wrong=()):
        super().__init__()
        self.wrong = set(wrong)
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.modes = []

    def forward(self, x):
        self.modes.append(self.training)
        # normalize() maps raw value v to (v / 255 - 0.5) / 0.25 with mean 0.5, std 0.25
        raw = (x[:, 0, 0, 0, 0] * 0.25 + 0.5) * 255
        labels = torch.round(raw / 50).long()
        predicted = torch.where(torch.isin(labels, torch.tensor(sorted(self.wrong), dtype=torch.long)),
                                torch.zeros_like(labels), labels)
        return torch.nn.functional.one_hot(predicted, NUM_CLASSES).float() * self.scale


def run(labels, wrong=(), batch_size=3):
    loader = DataLoader(FakeVideos(labels), batch_size=batch_size, shuffle=False)
    model = LabelReader(wrong)
    model.train()
    result = evaluate(model, loader, torch.device("cpu"), [0.5] * 3, [0.25] * 3, nullcontext())
    return result, model


def test_all_correct():
    labels = [0, 1, 2, 3, 1, 2, 3]
    (correct, total), _ = run(labels)
    assert (correct, total) == (7, 7)


def test_counts_exactly():
    labels = [0, 1, 2, 3, 1, 2, 3]
    # Class 3 (2 videos) is always predicted as 0: 5 of 7 correct.
    (correct, total), _ = run(labels, wrong={3})
    assert (correct, total) == (5, 7)
    (correct, total), _ = run(labels, wrong={1, 2, 3}, batch_size=7)
    assert (correct, total) == (1, 7)
    # Class 0 "wrong" still predicts 0: nothing changes.
    assert run(labels, wrong={0}, batch_size=1)[0] == (7, 7)


def test_eval_mode_then_back_to_train():
    (_, _), model = run([0, 1, 2])
    assert model.modes and not any(model.modes)  # forward ran in eval mode
    assert model.training  # restored


def test_total_mismatch_raises():
    class Partial(torch.utils.data.Sampler):
        def __init__(self, n):
            self.n = n

        def __iter__(self):
            return iter(range(self.n))

        def __len__(self):
            return self.n

    dataset = FakeVideos([0, 1, 2, 3, 0])
    loader = DataLoader(dataset, batch_size=2, sampler=Partial(3))  # a shard that misses 2 videos
    with pytest.raises(VMBError) as info:
        evaluate(LabelReader(), loader, torch.device("cpu"), [0.5] * 3, [0.25] * 3, nullcontext())
    assert "3" in str(info.value) and "5" in str(info.value)
