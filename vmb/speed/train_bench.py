"""Training speed (`tools/bench_train.py`): seconds per training iteration of one device, and VMB's overhead.

The run: a benchmark config's model, optimizer, batch and precision fed by VMB's own loaders (`--cfg`), or
synthetic tensors already on the device (`--synthetic`, and always for a zoo model, `--model`). A config runs
as the first of its processes (its share of the global batch; vmb.engine.distributed.run_processes). Each
iteration is VMB's timed-loop step (`vmb_step`). The first `--warmup` iterations are run but not timed (50 by
default, as MMAction2's speed tables skip them); the peak memory counts from the end of the warm-up.

Per iteration: data time, the host waiting for the next batch (perf_counter); compute time, the step (on CUDA
a pair of CUDA events per iteration, read after a single synchronisation at the end; on the CPU perf_counter);
total, from the end of the previous step to the end of this one (on CUDA between the steps' end events, so on
the device's timeline). On the CPU data + compute is the total less the loop's own bookkeeping; on CUDA the
host's wait overlaps the device's previous step, so the device's own wait for data is total - compute.

The overhead comparison steps the same model, optimizer and batch (a) by a bare loop as a user writes it
(`bare_step`) and (b) by VMB's step with everything the timed loop does per step (`vmb_step`), in interleaved
rounds (a, b, a, b, ...) so that machine drift hits both; the result is the median VMB/bare ratio of the
rounds, with their spread (vmb.speed.train_report: goal <= GOAL_OVERHEAD).
"""
from __future__ import annotations

import argparse
import itertools
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from fvcore.common.config import CfgNode

from vmb.config import load_config
from vmb.data.augment import draw_clip_augment
from vmb.data.loader import build_loaders, clip_spec_from_cfg, num_workers_here, per_process_batch, usable_cores
from vmb.data.prepare.synthetic import ensure_config_dataset
from vmb.data.transforms import normalize
from vmb.data.video import check_decoding_device
from vmb.engine.distributed import cpu_threads, run_processes
from vmb.engine.meters import StallWatch, Window
from vmb.engine.mixup import MixFn, build_mixup
from vmb.engine.numerics import set_numerics
from vmb.engine.precision import PRECISIONS, autocast, check_precision, memory_format, training_precision
from vmb.engine.optim import build_optimizer, lr_schedule, set_lr
from vmb.engine.step import model_input, train_step
from vmb.errors import ConfigError
from vmb.models.build import build_model
from vmb.models.zoo import get_zoo_model
from vmb.record.system import describe_system
from vmb.speed.gpu_monitor import UtilizationSampler, count_host_syncs

ZOO_BATCH_SIZE = 8  # --model's default batch (MMAction2's speed tables: 8 clips per GPU)
ZOO_NUM_CLASSES = 400  # zoo models keep their published Kinetics-400 head
SYNC_COUNT_ITERS = 5  # iterations run under the sync debug mode after the timed ones (CUDA)
Clips = torch.Tensor | list[torch.Tensor]
Batch = tuple[Clips, torch.Tensor, torch.Tensor | None]  # clips, labels, augment parameters (None: float clips)


@dataclass
class IterTimes:
    """Seconds of each timed iteration, in order: waiting for data, the step, and the whole iteration; on CUDA
    also the GPU's mean NVML utilisation over the timed iterations, and the host syncs per iteration counted
    after them (None where not measured)."""

    data: list[float] = field(default_factory=list)
    compute: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    gpu_utilization_pct: float | None = None
    host_syncs_per_step: float | None = None

    def count(self) -> int:
        """Iterations complete in every list (an interrupted one is in `data` only)."""
        return min(len(self.data), len(self.compute), len(self.total))


class _StepClock:
    """Start and end stamps of steps: CUDA events on CUDA (read after one synchronisation), else perf_counter."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.starts: list = []
        self.stops: list = []
        self.origin = self._stamp()

    def _stamp(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def start(self) -> None:
        self.starts.append(self._stamp())

    def stop(self) -> None:
        self.stops.append(self._stamp())

    def _seconds(self, a, b) -> float:
        return a.elapsed_time(b) / 1000.0 if self.cuda else b - a  # events count milliseconds

    def read(self) -> tuple[list[float], list[float]]:
        """(step seconds, seconds from the previous step's end to this one's) of every finished step."""
        if self.cuda:
            torch.cuda.synchronize()
        ends = [self.origin, *self.stops]
        return ([self._seconds(a, b) for a, b in zip(self.starts, self.stops)],
                [self._seconds(a, b) for a, b in zip(ends, ends[1:])])


def time_iterations(batches: Iterator, step: Callable[[Any], None], count: int, device: torch.device,
                    into: IterTimes) -> None:
    """Run `count` iterations (next batch, then `step(batch)`) and record their times in `into`, also when an
    exception (an interrupt, out of memory) stops them: `into` then holds the iterations that finished."""
    clock = _StepClock(device)
    try:
        for _ in range(count):
            began = time.perf_counter()
            batch = next(batches)
            into.data.append(time.perf_counter() - began)
            clock.start()
            step(batch)
            clock.stop()
    finally:
        into.compute, into.total = clock.read()


def measure(batches: Iterator, step: Callable[[Any], None], iters: int, warmup: int, device: torch.device,
            into: IterTimes) -> None:
    """`warmup` untimed iterations, then `iters - warmup` timed ones into `into`; CUDA's peak memory counter
    restarts after the warm-up. On CUDA, NVML samples the GPU's utilisation during the timed iterations, and
    SYNC_COUNT_ITERS more iterations (batch and step) run under torch's sync debug mode, which counts the
    host synchronisations of the training loop's thread (separately, so that the warnings cost no timed time)."""
    for _ in range(warmup):
        step(next(batches))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    utilization = UtilizationSampler(device)
    utilization.start()
    try:
        time_iterations(batches, step, iters - warmup, device, into)
    finally:
        into.gpu_utilization_pct = utilization.stop()
    if device.type == "cuda":
        with count_host_syncs(device) as syncs:
            for _ in range(SYNC_COUNT_ITERS):
                step(next(batches))
        into.host_syncs_per_step = syncs.count / SYNC_COUNT_ITERS


@dataclass
class Trainer:
    """What both steps train, and what VMB's timed loop adds around each step."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    autocast: AbstractContextManager
    clip_norm: float
    schedule: Callable[[float], float]
    iters_per_epoch: int
    mixup: MixFn | None
    mean: list[float]
    std: list[float]
    window: Window
    device: torch.device
    steps: int = 0  # the global step, as the timed loop counts it


def vmb_step(t: Trainer, batch: Batch) -> None:
    """One iteration of VMB's timed loop (vmb.engine.train.train_to_target) without its logging: the LR from
    the schedule, the uint8 batch to the device, augmented and normalized (float clips go as they are), MixUp,
    `train_step`, the loss added to the logging window."""
    clips, labels, augment = batch
    step, t.steps = t.steps, t.steps + 1
    set_lr(t.optimizer, t.schedule(step / t.iters_per_epoch))
    if augment is not None:
        clips, labels = model_input(clips, labels, augment, step, t.device, t.mean, t.std, t.mixup)
    else:
        labels = labels.to(t.device, non_blocking=True)
    t.window.add(train_step(t.model, clips, labels, t.optimizer, t.scaler, t.autocast, t.clip_norm))


def bare_step(t: Trainer, clips: Clips, labels: torch.Tensor) -> None:
    """The step as a user writes it (PyTorch's AMP recipe, nanoGPT's loop): zero_grad, forward, cross_entropy,
    backward, optimizer step; gradient clipping where the recipe has it."""
    t.optimizer.zero_grad(set_to_none=True)
    with t.autocast:
        loss = F.cross_entropy(t.model(clips), labels)
    t.scaler.scale(loss).backward()
    if t.clip_norm > 0:
        t.scaler.unscale_(t.optimizer)
        torch.nn.utils.clip_grad_norm_(t.model.parameters(), t.clip_norm)
    t.scaler.step(t.optimizer)
    t.scaler.update()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def overhead_clock(device: torch.device) -> tuple[Callable[[], float], str]:
    """The comparison's clock: on CUDA wall time between synchronisations; on the CPU this process's CPU time,
    which other processes on the machine do not inflate (both loops run the same threads)."""
    if device.type == "cuda":
        return time.perf_counter, "wall time, device synchronised"
    return time.process_time, "CPU time of this process"


def _seconds(fn: Callable[[], None], steps: int, device: torch.device) -> float:
    clock = overhead_clock(device)[0]
    _sync(device)
    began = clock()
    for _ in range(steps):
        fn()
    _sync(device)
    return clock() - began


def compare_overhead(t: Trainer, batch: Batch, bare_input: tuple[Clips, torch.Tensor], rounds: int, steps: int,
                     into: list[tuple[float, float]]) -> None:
    """Append (bare seconds, VMB seconds) of `steps` steps each to `into`, one pair per round, bare first;
    one untimed round of each comes before."""
    def bare() -> None:
        bare_step(t, *bare_input)

    def vmb() -> None:
        vmb_step(t, batch)

    for fn in (bare, vmb):
        _seconds(fn, steps, t.device)
    for _ in range(rounds):
        into.append((_seconds(bare, steps, t.device), _seconds(vmb, steps, t.device)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Seconds per training iteration of one device (data and compute time, clips/s, peak "
                    "memory), and VMB's step against a bare PyTorch loop.")
    parser.add_argument("--cfg", help="benchmark config: its model, optimizer, batch, precision and data")
    parser.add_argument("--model", help="a zoo model (vmb.models.zoo) on synthetic tensors, instead of --cfg")
    parser.add_argument("--synthetic", action="store_true",
                        help="random clips already on the device instead of the config's data (always so "
                             "with --model)")
    parser.add_argument("--iters", type=int, default=200, help="iterations, warm-up included (default: 200)")
    parser.add_argument("--warmup", type=int, default=50, help="first iterations left out (default: 50)")
    parser.add_argument("--batch-size", type=int,
                        help="clips per step (default: the config's TRAIN.BATCH_SIZE over its processes, one "
                             f"device's share; {ZOO_BATCH_SIZE} with --model)")
    parser.add_argument("--precision", choices=list(PRECISIONS),
                        help="fp32, bf16 (autocast) or fp16 (autocast + GradScaler, CUDA only) (default: the "
                             "config's TRAIN.MIXED_PRECISION / AMP_DTYPE on CUDA, else fp32)")
    parser.add_argument("--device", choices=("cuda", "cpu"),
                        help="default: cuda when a CUDA device is visible, else cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: as a training process sets "
                                                    "them, the usable cores less the loader's workers)")
    parser.add_argument("--rounds", type=int, default=10,
                        help="interleaved rounds of the VMB/bare comparison; 0 skips it (default: 10)")
    parser.add_argument("--round-steps", type=int, default=5, help="steps of each loop per round (default: 5)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="KEY VALUE config overrides (with --model: the defaults', e.g. SOLVER.OPTIMIZING_METHOD)")
    return parser


def check_args(args: argparse.Namespace) -> None:
    if (args.cfg is None) == (args.model is None):
        raise ConfigError("give exactly one of --cfg CONFIG (a benchmark config and its data) or --model NAME "
                          "(a zoo model on synthetic tensors)")
    if args.warmup < 0 or args.iters <= args.warmup:
        raise ConfigError(f"--iters {args.iters} must exceed --warmup {args.warmup} (>= 0): the warm-up "
                          "iterations are not measured")
    if args.rounds < 0 or args.round_steps < 1 or any(v is not None and v < 1
                                                      for v in (args.batch_size, args.threads)):
        raise ConfigError("--rounds must be >= 0; --round-steps, --batch-size and --threads >= 1")


def pick_device(name: str | None) -> torch.device:
    """--device, or CUDA device 0 when one is visible, else the CPU."""
    cuda = torch.cuda.is_available()
    if name == "cuda" and not cuda:
        raise ConfigError("--device cuda but no CUDA device is visible (torch.cuda.is_available() is False); "
                          "use --device cpu")
    return torch.device("cuda", 0) if (name or ("cuda" if cuda else "cpu")) == "cuda" else torch.device("cpu")


def pick_precision(name: str | None, cfg: CfgNode, device: torch.device) -> str:
    """--precision, checked against the device, or the config's own on CUDA (VMB trains fp32 on the CPU)."""
    if name is None:
        return training_precision(cfg, device)
    check_precision(name, device, f"--precision {name}")
    return name


def _config_batch(cfg: CfgNode, n: int, device: torch.device) -> Batch:
    """`n` random uint8 clips of the config's training shape on the device, labels, and augmentation parameters
    drawn as the loader draws them (an empty tensor where the recipe has none)."""
    crop, spec = cfg.DATA.TRAIN_CROP_SIZE, clip_spec_from_cfg(cfg)
    generator = torch.Generator(device=device).manual_seed(cfg.RNG_SEED)
    clips = torch.randint(0, 256, (n, 3, cfg.DATA.NUM_FRAMES, crop, crop), generator=generator, device=device,
                          dtype=torch.uint8)
    labels = torch.randint(0, cfg.MODEL.NUM_CLASSES, (n,), generator=generator, device=device)
    params = torch.zeros(n, 0, dtype=torch.int64)
    if spec.rand_augment is not None or spec.erase_prob > 0:
        rng = np.random.default_rng(cfg.RNG_SEED)
        params = torch.stack([draw_clip_augment(rng, *(spec.rand_augment or (0, 0.0, 0.0)), spec.erase_prob,
                                                crop, crop) for _ in range(n)])
    return clips, labels, params


def _epochs(loader) -> Iterator[Batch]:
    """The loader's batches epoch after epoch, as the timed loop sees them (epoch boundaries included)."""
    for epoch in itertools.count():
        loader.sampler.set_epoch(epoch)
        for clips, labels, _, augment in loader:
            yield clips, labels, augment


@dataclass
class Setup:
    """A benchmark ready to run: the trainer, its batches, and the comparison's batch and bare-loop input."""

    trainer: Trainer
    batches: Iterator[Batch]
    batch: Batch
    bare_input: tuple[Clips, torch.Tensor]


def build_setup(args: argparse.Namespace, device: torch.device, result: dict) -> Setup:
    """Model, optimizer, precision and input for --cfg or --model; records what was set up in `result`.

    A config runs as the first of its processes (`run_processes`: NUM_GPUS, or the launcher's WORLD_SIZE): its
    share of TRAIN.BATCH_SIZE (the global batch) and of the training set; --batch-size sets that share. Workers
    and threads are those of one process here."""
    cfg = load_config(args.cfg, args.opts)
    processes = 1 if args.model else run_processes(cfg.NUM_GPUS)
    batch_size = args.batch_size or (ZOO_BATCH_SIZE if args.model else None)
    if batch_size:
        cfg = load_config(args.cfg, [*args.opts, "TRAIN.BATCH_SIZE", str(batch_size * processes)])
    batch_size = per_process_batch(cfg.TRAIN.BATCH_SIZE, processes, "TRAIN.BATCH_SIZE")
    precision = pick_precision(args.precision, cfg, device)
    synthetic = args.synthetic or args.model is not None
    workers = 0 if synthetic else num_workers_here(cfg.DATA_LOADER.NUM_WORKERS, cfg.DATA.DECODING_BACKEND)
    torch.set_num_threads(args.threads or cpu_threads(usable_cores(), 1, workers))  # as a training process would
    result.update(precision=precision, batch_size=batch_size, global_batch_size=cfg.TRAIN.BATCH_SIZE,
                  processes=processes, input="synthetic" if synthetic else "real", num_workers=workers,
                  threads=torch.get_num_threads())
    set_numerics(device)
    torch.manual_seed(cfg.RNG_SEED)
    if args.model:
        zoo = get_zoo_model(args.model)
        model = zoo.build(ZOO_NUM_CLASSES)
        result.update(model=zoo.name, clip=[zoo.num_frames, zoo.crop_size, zoo.crop_size])
    else:
        model = build_model(cfg)
        result.update(model=cfg.BENCHMARK.NAME or cfg.MODEL.ARCH,
                      clip=[cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TRAIN_CROP_SIZE])
    result["system"] = describe_system(device.type, 1, 1)
    model = model.to(device, memory_format=memory_format(device)).train()
    loader = None
    if not synthetic:
        check_decoding_device(cfg.DATA.DECODING_BACKEND, device)
        ensure_config_dataset(cfg)  # the smoke data, generated once (untimed, as in a run)
        loader = build_loaders(cfg, 0, processes, device, workers=workers)[0]
    trainer = Trainer(
        model, build_optimizer(model, cfg), torch.amp.GradScaler(device.type, enabled=precision == "fp16"),
        autocast(precision, device),
        cfg.SOLVER.CLIP_GRAD_L2NORM, lr_schedule(cfg),
        len(loader) if loader else args.iters,  # synthetic: the run counts as one epoch of the schedule
        None if args.model else build_mixup(cfg), cfg.DATA.MEAN, cfg.DATA.STD,
        Window(device, batch_size, StallWatch(warmup_steps=0), main=False), device)
    if args.model:
        clips = zoo.example_input(batch_size, device)
        labels = torch.randint(0, ZOO_NUM_CLASSES, (batch_size,), device=device)
        batch, bare_input = (clips, labels, None), (clips, labels)
    else:
        batch = _config_batch(cfg, batch_size, device)
        # what a user's loader would hand the bare loop
        clips = normalize(batch[0], cfg.DATA.MEAN, cfg.DATA.STD, memory_format(device))
        bare_input = (clips, batch[1])
    return Setup(trainer, itertools.repeat(batch) if loader is None else _epochs(loader), batch, bare_input)
