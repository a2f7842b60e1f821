"""What equal BatchNorm statistics on every process cost: SyncBatchNorm in every training step, against
averaging the buffers once before each evaluation (vmb.engine.distributed.sync_bn_buffers), side by side.

    python benchmarks/bn_sync.py [--cfg configs/smoke/X3D.yaml] [--steps 10] [--val-clips 160] [KEY VALUE ...]

Starts 2 CPU processes (gloo, one thread each), builds the config's model with random weights and times,
on random clips of the config's training shape and per-process batch, the median of `--steps` DDP
training steps (after 2 of warm-up; the four kinds taken in turn) with:

- plain BN, DDP forward_sync_buffers=True (torch's default, formerly broadcast_buffers: rank 0's buffers
  copied to every process before each step);
- plain BN, forward_sync_buffers=False (each process keeps its own statistics: what sync_bn_buffers needs
  to give the global batch's EMA of the means);
- synchronised BN, with local statistics (its arithmetic alone) and with global ones.

torch's SyncBatchNorm runs on CUDA only, so the synchronised BN here is `EmulatedSyncBN`: the same
communication (one collective per BN layer in the forward pass and one in the backward) in plain torch ops.
What no CPU run shows: on CUDA, SyncBatchNorm's forward also waits for the device in every BN layer (it
drops empty processes' statistics with a boolean mask, torch.nn.modules._functions.SyncBatchNorm).
Then it times one sync_bn_buffers call and one evaluation's forward passes (`--val-clips` clips, the smoke
validation split by default, TEST.BATCH_SIZE per pass: what a cached evaluation costs), and prints every
cost relative to a plain step.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parents[1]

import torch
import torch.distributed as dist
import torch.nn.functional as F

from vmb.config import load_config
from vmb.engine import distributed
from vmb.models.build import build_model

PROCESSES, WARMUP = 2, 2


class AllReduceSum(torch.autograd.Function):
    """Sum over the processes, with the gradient summed over them too."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class EmulatedSyncBN(torch.nn.BatchNorm3d):
    """BatchNorm3d whose training statistics are those of the global batch: per-channel sums and sums of
    squares all-reduced in the forward pass (and, through autograd, their gradients in the backward), as
    SyncBatchNorm all-gathers them in the forward and all-reduces in the backward. With `sync` False it
    does the same arithmetic on local statistics, without the collectives."""

    def __init__(self, num_features: int, eps: float, momentum: float, sync: bool) -> None:
        super().__init__(num_features, eps, momentum)
        self.sync = sync

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, T, H, W)."""
        if not self.training:
            return super().forward(x)
        channels, dims = x.shape[1], (0, 2, 3, 4)
        stats = torch.cat([x.sum(dims), (x * x).sum(dims), x.new_full((1,), x.numel() / channels)])  # (2C + 1,)
        if self.sync:
            stats = AllReduceSum.apply(stats)
        count = stats[-1]
        mean = stats[:channels] / count
        var = stats[channels:2 * channels] / count - mean * mean
        with torch.no_grad():
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * count / (count - 1), self.momentum)
            self.num_batches_tracked += 1
        shape = (1, channels, 1, 1, 1)
        scale = self.weight * torch.rsqrt(var + self.eps)
        return x * scale.view(shape) + (self.bias - mean * scale).view(shape)


def emulate_sync_bn(module: torch.nn.Module, sync: bool) -> torch.nn.Module:
    """`module` with every BatchNorm3d replaced by an EmulatedSyncBN holding its parameters and buffers."""
    if isinstance(module, torch.nn.BatchNorm3d):
        replacement = EmulatedSyncBN(module.num_features, module.eps, module.momentum, sync)
        replacement.load_state_dict(module.state_dict())
        return replacement
    for name, child in module.named_children():
        setattr(module, name, emulate_sync_bn(child, sync))
    return module


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 0) -> float:
    """Median wall seconds of `fn()`, every call started together on all processes."""
    seconds = []
    for i in range(warmup + repeats):
        dist.barrier()
        start = time.perf_counter()
        fn()
        if i >= warmup:
            seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def training_step(model: torch.nn.Module, clips: torch.Tensor, labels: torch.Tensor,
                  sync_buffers: bool) -> Callable[[], None]:
    """A DDP SGD step of `model` on this process's clips (N, C, T, H, W) and labels (N,); `sync_buffers`:
    DDP copies rank 0's buffers to every process before each forward."""
    ddp = torch.nn.parallel.DistributedDataParallel(model, forward_sync_buffers=sync_buffers)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        loss = F.cross_entropy(ddp(clips), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def interleaved_step_seconds(steps: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds of each step, the steps taken in turn (one of each per round) so that other load on
    the machine weighs on all of them alike."""
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(WARMUP + repeats):
        for name, step in steps.items():
            dist.barrier()
            start = time.perf_counter()
            step()
            if i >= WARMUP:
                seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in seconds.items()}


def evaluation_seconds(model: torch.nn.Module, cfg, clips_per_process: int) -> float:
    """Seconds of one evaluation's forward passes on this process's share of the validation split."""
    batch = -(-cfg.TEST.BATCH_SIZE // PROCESSES)
    shape = (3, cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE)
    batches = [torch.randn(min(batch, clips_per_process - i), *shape) for i in range(0, clips_per_process, batch)]

    def evaluate() -> None:
        with torch.inference_mode():
            for clips in batches:
                model(clips)

    model.eval()
    seconds = median_seconds(evaluate, 3, warmup=1)
    model.train()
    return seconds


def measure(cfg_file: str, opts: list[str], steps: int, val_clips: int) -> None:
    ctx = distributed.setup(num_gpus=0)
    cfg = load_config(cfg_file, [*opts, "NUM_GPUS", "0"])
    per_process = cfg.TRAIN.BATCH_SIZE // PROCESSES
    torch.manual_seed(ctx.rank)  # different clips in each process
    clips = torch.randn(per_process, 3, cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TRAIN_CROP_SIZE)
    labels = torch.randint(cfg.MODEL.NUM_CLASSES, (per_process,))

    def fresh_model() -> torch.nn.Module:
        torch.manual_seed(0)
        return build_model(cfg)

    model = fresh_model()
    bn_layers = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    bn_values = sum(m.running_mean.numel() * 2 for m in model.modules()
                    if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    rows = interleaved_step_seconds({
        "plain BN, forward_sync_buffers=True": training_step(fresh_model(), clips, labels, True),
        "plain BN, forward_sync_buffers=False": training_step(model, clips, labels, False),
        "SyncBN arithmetic, local statistics": training_step(emulate_sync_bn(fresh_model(), False), clips, labels,
                                                             False),
        "SyncBN, global statistics": training_step(emulate_sync_bn(fresh_model(), True), clips, labels, False),
    }, steps)
    sync_s = median_seconds(lambda: distributed.sync_bn_buffers(model), 50, warmup=5)
    eval_s = evaluation_seconds(model, cfg, -(-val_clips // PROCESSES))
    if ctx.is_main:
        plain = rows["plain BN, forward_sync_buffers=False"]
        print(f"{cfg.MODEL.ARCH} ({cfg_file}), {PROCESSES} CPU processes (gloo, {torch.get_num_threads()} thread "
              f"each) x {per_process} clips of {cfg.DATA.NUM_FRAMES}x{cfg.DATA.TRAIN_CROP_SIZE}^2; {bn_layers} BN "
              f"layers, {bn_values} buffer values; median of {steps} steps")
        for name, seconds in rows.items():
            print(f"  {name:<38} {seconds:8.4f} s/step  {seconds / plain:6.3f} x plain step")
        comm = rows["SyncBN, global statistics"] - rows["SyncBN arithmetic, local statistics"]
        print(f"  SyncBN communication: {comm:+.4f} s/step ({comm / plain:+.1%} of a plain step), "
              f"{2 * bn_layers} collectives per step")
        print(f"  one evaluation ({val_clips} clips, forward only): {eval_s:.4f} s = {eval_s / plain:.2f} plain steps")
        print(f"  sync_bn_buffers (one all-reduce): {sync_s * 1e3:.3f} ms = {sync_s / plain:.2%} of a plain step, "
              f"{sync_s / eval_s:.2%} of an evaluation")
    distributed.teardown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", default="configs/smoke/X3D.yaml")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--val-clips", type=int, default=160, help="validation clips (smoke: 20 classes x 8)")
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    distributed.launch(PROCESSES, measure, args.cfg, args.opts, args.steps, args.val_clips)
    return 0


if __name__ == "__main__":
    sys.exit(main())
