"""Validation top-1, counted exactly across processes."""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Sequence

import torch

from vmb.data.loader import ValLoader
from vmb.data.transforms import normalize
from vmb.engine import distributed
from vmb.engine.precision import memory_format
from vmb.errors import VMBError


def evaluate(model: torch.nn.Module, loader: ValLoader, device: torch.device, mean: Sequence[float],
             std: Sequence[float], autocast: AbstractContextManager) -> tuple[int, int]:
    """(correct, total) over the whole validation set, summed over all processes.

    Every process first replaces its BatchNorm running statistics by their average over the processes
    (`distributed.sync_bn_buffers`), so that all evaluate one model and the result does not depend on how
    the set is split. Every process sees a disjoint, unpadded shard, so each video is counted exactly once;
    a mismatch with the dataset size is an error, never a silently different denominator.
    """
    distributed.sync_bn_buffers(model)
    model.eval()
    counts = torch.zeros(2, dtype=torch.long, device=device)
    with torch.inference_mode(), autocast:
        for clips, labels, *_ in loader:
            logits = model(normalize(clips.to(device, non_blocking=True), mean, std, memory_format(device)))
            counts[0] += (logits.argmax(dim=1) == labels.to(device, non_blocking=True)).sum()
            counts[1] += labels.numel()
    model.train()
    correct, total = distributed.all_reduce_sum(counts).tolist()
    if total != len(loader.dataset):
        raise VMBError(f"validation counted {total} videos but the split has {len(loader.dataset)}")
    return correct, total
