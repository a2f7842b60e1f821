"""Run by test_bn_sync.py (and test_cuda.py), alone or under torchrun. Arguments: WEIGHTS CONFIG then KEY
VALUE overrides.

Without a WEIGHTS file (2 or more processes): train a tiny model for a few epochs under DDP with
forward_sync_buffers=False (each process's BatchNorm statistics follow its own sub-batches), evaluate it
(which averages the statistics over the processes), save rank 0's weights to WEIGHTS and print rank 0's
JSON: the counts and the logits behind them, the largest difference between the processes' BatchNorm
buffers before and after, and that of the synced buffers from the mean of the buffers before. With a
WEIGHTS file: evaluate those weights and print the counts and logits.
"""
import json
import pathlib
import sys
from contextlib import nullcontext

import torch
import torch.distributed as dist
import torch.nn.functional as F

from vmb.config import load_config
from vmb.data.augment import apply_clip_augment
from vmb.data.loader import build_loaders
from vmb.data.transforms import normalize
from vmb.engine import distributed
from vmb.engine.evaluate import evaluate
from vmb.models.build import build_model

EPOCHS = 3  # enough for the tiny model to leave a constant prediction


def bn_buffers(model: torch.nn.Module) -> torch.Tensor:
    """Every BatchNorm running_mean and running_var, flattened, as float64."""
    return torch.cat([buffer.double().reshape(-1) for name, buffer in model.named_buffers()
                      if name.endswith(("running_mean", "running_var"))])


def gathered(tensor: torch.Tensor) -> torch.Tensor:
    """(world_size, numel): `tensor` from every process."""
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor)
    return torch.stack(parts)


def train(model: torch.nn.Module, loader, cfg, device: torch.device, epochs: int) -> None:
    """SGD on this process's shard of each global batch, gradients averaged by DDP, buffers left alone."""
    ddp = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None, forward_sync_buffers=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        for clips, labels, _, augment in loader:
            clips = normalize(apply_clip_augment(clips.to(device), augment), cfg.DATA.MEAN, cfg.DATA.STD)
            loss = F.cross_entropy(ddp(clips), labels.to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def val_logits(model: torch.nn.Module, loader, cfg, device: torch.device) -> list[list[float]]:
    """(videos, classes): the logits each process computes for its shard of the validation set, as its
    evaluation does, gathered in video order (process r holds videos r, r + W, ...)."""
    model.eval()
    with torch.inference_mode():
        local = torch.cat([model(normalize(clips.to(device), cfg.DATA.MEAN, cfg.DATA.STD)) for clips, *_ in loader])
    model.train()
    parts = [local.tolist()]
    if dist.is_initialized():
        parts = [None] * dist.get_world_size()
        dist.all_gather_object(parts, local.tolist())
    return [parts[video % len(parts)][video // len(parts)] for video in range(len(loader.dataset))]


weights = pathlib.Path(sys.argv[1])
cfg = load_config(sys.argv[2], sys.argv[3:])
ctx = distributed.setup(cfg.NUM_GPUS)
# One intra-op thread in every run, whatever the process count: with 2 threads (one process) and 1 (each of
# two) oneDNN reduces in another order on some CPUs (AMD EPYC), and logits differ in the 8th digit.
torch.set_num_threads(1)
torch.manual_seed(0)  # the same initial weights in every process
model = build_model(cfg).to(ctx.device)
train_loader, val_loader = build_loaders(cfg, ctx.rank, ctx.world_size, ctx.device)


def counts() -> dict:
    """evaluate()'s counts and the logits behind them."""
    correct, total = evaluate(model, val_loader, ctx.device, cfg.DATA.MEAN, cfg.DATA.STD, nullcontext())
    return {"correct": correct, "total": total, "world_size": ctx.world_size,
            "logits": val_logits(model, val_loader, cfg, ctx.device)}


if weights.exists():
    model.load_state_dict(torch.load(weights, map_location=ctx.device, weights_only=True))
    report = counts()
else:
    train(model, train_loader, cfg, ctx.device, EPOCHS)
    before = gathered(bn_buffers(model))
    report = counts()
    after = gathered(bn_buffers(model))
    report["spread_before"] = (before - before[0]).abs().max().item()
    report["spread_after"] = (after - after[0]).abs().max().item()
    # Relative to the largest magnitude of each buffer entry: float32 averaging is exact to about 1e-7.
    scale = before.abs().max(dim=0).values.clamp_min(1e-30)
    report["error_from_mean"] = ((after[0] - before.mean(dim=0)).abs() / scale).max().item()
    if ctx.is_main:
        torch.save(model.state_dict(), weights)
if ctx.is_main:
    print(json.dumps(report))
distributed.teardown()
