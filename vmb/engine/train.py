"""The timed run: train until validation top-1 reaches the target, as in MLPerf Training.

The clock is the run log's wall clock: run_start is logged before any video is decoded (before it, the
untimed pre-flight only opens each listed file's header; vmb.data.preflight), run_stop right after the first
evaluation that reaches the target. Evaluation and checkpointing count; nothing pauses the clock, not even a
restart (the first run_start stays).

A preemption signal stops the loop at a step boundary, resumable (vmb.engine.preemption). A full or failing
disk stops the run with one line naming the file and its free space (vmb.files), resumable (`finish`); for
TensorBoard's files it only turns TensorBoard off (vmb.record.tensorboard).

The loop also measures how long it waits for its next batch (`data_wait_fraction` in result.json, TensorBoard
and the progress bar) and warns once when the run is input-bound.
"""
from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

import torch
from fvcore.common.config import CfgNode
from mlperf_logging.mllog import constants as C
from torch.utils.data import DataLoader
from tqdm import tqdm

from vmb import rules
from vmb.record.fingerprint import dataset_fingerprint
from vmb.record.energy import NOT_MEASURED_NVML, NOT_MEASURED_RESUMED, GpuEnergy
from vmb.record.header import log_header
from vmb.record.provenance import code_provenance
from vmb.record.runlog import RunLog, now_ms, read_events
from vmb.record.schema import (CHECKPOINT, CHECKPOINT_FILE, CONFIG, DECODE_FAILURES, NUM_WORKERS, NUMERICS, RESULT,
                               RESUME, RUN_LOG, SYSTEM, TENSORBOARD_DIR, Result, effective_evals)
from vmb.record.system import describe_system
from vmb.record.tensorboard import TensorBoard
from vmb.config import config_digest
from vmb.data.loader import ValLoader, build_loaders, num_workers_here
from vmb.launch import processes_per_node
from vmb.data.preflight import check_dataset
from vmb.data.prepare.synthetic import ensure_config_dataset
from vmb.data.video import check_decoding_device
from vmb.engine import distributed
from vmb.engine.checkpoint import restore, resume_state, save_checkpoint, training_state
from vmb.engine.meters import DataWait, StallWatch, Window, timed_batches
from vmb.engine.evaluate import evaluate
from vmb.engine.mixup import build_mixup
from vmb.engine.numerics import set_numerics
from vmb.engine.precision import autocast, memory_format, training_precision
from vmb.engine.step import model_input, train_step
from vmb.engine.optim import build_optimizer, lr_schedule, set_lr
from vmb.engine.preemption import StopSignal, checkpoint_fits, preemptible
from vmb.engine.resume import Interrupted, check_same_run, prepare_output_dir
from vmb.errors import DataError, VMBError
from vmb.files import WriteError, write_text_atomic
from vmb.models.build import build_model



def _preflight(cfg: CfgNode, ctx: distributed.Context) -> None:
    """The untimed data check (vmb.data.preflight), once per machine, and a failure stops every process.

    Local rank 0 of each node checks: each node reads its own copy of the data (or its own mount of a shared
    one), and one check per node does not multiply the reads by the number of processes. The all-reduce is
    the barrier: no process goes on to run_start before every node's data passed.
    """
    error = None
    if ctx.local_rank == 0:
        try:
            check_dataset(cfg.DATA.PATH_TO_DATA_DIR, cfg.MODEL.NUM_CLASSES, cfg.DATA.PATH_PREFIX, cfg.DATA.FINGERPRINT)
        except DataError as exc:
            error = exc
    failed = int(distributed.all_reduce_sum(torch.tensor(int(error is not None), device=ctx.device)).item())
    if error is not None:
        raise error
    if failed:
        raise DataError(f"the data pre-flight failed on {failed} machine(s); see their error")


def _json(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


T = TypeVar("T")


def _on_main(ctx: distributed.Context, fn: Callable[[], T]) -> T:
    """`fn()` run by rank 0 only and its value broadcast to every process (so nothing needs a shared
    filesystem); a VMBError on rank 0 stops every process with the same line."""
    value, error = None, None
    if ctx.is_main:
        try:
            value = fn()
        except VMBError as exc:
            error = str(exc)
    value, error = distributed.broadcast_object((value, error))
    if error is not None:
        raise VMBError(error)
    return value


@dataclass
class Training:
    """What the untimed initialisation hands to the timed loop."""

    model: torch.nn.Module  # the module itself: checkpointed and evaluated
    train_model: torch.nn.Module  # the module trained: DDP-wrapped when there are several processes
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    autocast: AbstractContextManager
    train_loader: DataLoader
    val_loader: ValLoader
    run_start_ms: int
    start_epoch: int
    precision: str  # "fp32" or "amp_<dtype>": a checkpoint is resumed only in its own precision
    energy: GpuEnergy  # this process's GPU energy counter, read at run_start and run_stop
    decode_failures: int = 0
    data_wait: list = field(default_factory=list)  # [wait s, loop s] per epoch


def initialise(cfg: CfgNode, ctx: distributed.Context, out_dir: Path, runlog: RunLog,
               interrupted: Interrupted | None, workers: int) -> Training:
    """Untimed: header, system description, data pre-flight, model, optimizer, checkpoint, loaders; ends by
    logging run_start (a new run) or vmb_resume (an interrupted one, whose clock never stopped)."""
    device, main = ctx.device, ctx.is_main
    numerics = set_numerics(device)  # process-wide flags: set on every start, logged once
    provenance = code_provenance()
    if interrupted is None:
        runlog.start(C.INIT_START)
        log_header(runlog, cfg, f"{ctx.world_size}x{device.type}", provenance)
        runlog.event(NUM_WORKERS, workers)
    else:
        check_same_run(interrupted, cfg, provenance["source_digest"])
    if main:
        write_text_atomic(out_dir / CONFIG, cfg.dump())
        num_nodes = max(1, ctx.world_size // processes_per_node())
        system = {**describe_system(device.type, ctx.world_size, num_nodes), **provenance}
        write_text_atomic(out_dir / SYSTEM, _json(system))
        ensure_config_dataset(cfg)  # offline data generation: untimed, as MLPerf allows for data preparation
    distributed.barrier()
    _preflight(cfg, ctx)

    torch.manual_seed(cfg.RNG_SEED * 1000 + ctx.rank)  # init is identical on every rank: DDP broadcasts rank 0's
    model = build_model(cfg).to(device, memory_format=memory_format(device))
    train_model = model
    if ctx.world_size > 1:
        # forward_sync_buffers=False: each process keeps the BatchNorm statistics of its own sub-batches, which
        # evaluate() and the checkpoint average (distributed.sync_bn_buffers), rather than copying rank 0's.
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, forward_sync_buffers=False)
    precision_name = training_precision(cfg, device)  # checked before anything is logged: check_setup
    precision = "fp32" if precision_name == "fp32" else f"amp_{cfg.TRAIN.AMP_DTYPE}"
    if interrupted is None:
        runlog.event(NUMERICS, precision, **numerics)
    # The loaders read the split CSVs, but no video is decoded before run_start: workers (or the device decoding
    # thread) start on first use.
    train_loader, val_loader = build_loaders(cfg, ctx.rank, ctx.world_size, device, workers=workers)
    training = Training(
        model, train_model, build_optimizer(model, cfg),
        torch.amp.GradScaler(device.type, enabled=precision_name == "fp16"), autocast(precision_name, device),
        train_loader, val_loader, run_start_ms=0, start_epoch=0, precision=precision, energy=GpuEnergy(device))

    state = _on_main(ctx, lambda: resume_state(out_dir / CHECKPOINT_FILE, interrupted, precision))
    if state is not None:
        training.start_epoch, training.decode_failures, training.data_wait = restore(
            state, model, training.optimizer, training.scaler)
    if interrupted is None:
        runlog.end(C.INIT_STOP)
        training.run_start_ms = now_ms()
        runlog.start(C.RUN_START, time_ms=training.run_start_ms)
        training.energy.start()
    else:
        # Supersedes every evaluation logged after this epoch (rules: vmb.record.schema.effective_evals).
        training.run_start_ms = interrupted.run_start_ms
        training.energy.unavailable = training.energy.unavailable or NOT_MEASURED_RESUMED
        runlog.event(RESUME, value=training.start_epoch, epoch_num=training.start_epoch,
                     cut_line=interrupted.cut_line)
    runlog.event(C.TRAIN_SAMPLES, len(train_loader.dataset))
    runlog.event(C.EVAL_SAMPLES, len(val_loader.dataset))
    return training


def _reduce_epoch(failures: int, wait_s: float, ctx: distributed.Context) -> tuple[int, float]:
    """(decode failures summed over processes, the longest data wait of any process) in one all-reduce.

    The longest: a process whose loader is behind holds every other one up in the gradient all-reduce,
    where their wait does not show as data wait.
    """
    values = torch.zeros(1 + ctx.world_size, dtype=torch.float64, device=ctx.device)
    values[0], values[1 + ctx.rank] = failures, wait_s
    values = distributed.all_reduce_sum(values).tolist()  # the epoch's one host sync
    return int(values[0]), max(values[1:])


@dataclass
class Progress:
    """The timed loop's running totals, for the progress bar, TensorBoard and result.json."""

    status: str = C.ABORTED
    epoch: float = 0.0  # fractional epoch of the last evaluation
    train_seconds: float = 0.0  # loop time of the logging windows (evaluations excluded), this process
    train_clips: int = 0
    preempted: str | None = None  # the line to show when a preemption signal stopped the loop


def train_to_target(cfg: CfgNode, ctx: distributed.Context, t: Training, runlog: RunLog, out_dir: Path,
                    workers: int, stop: StopSignal) -> Progress:
    """The timed loop: train, evaluate every TRAIN.EVAL_PERIOD epochs, stop at the first evaluation that
    reaches the target or at SOLVER.MAX_EPOCH; checkpoint every TRAIN.CHECKPOINT_PERIOD epochs. `stop` may
    end it earlier, resumable (vmb.engine.preemption: where it is asked, and the checkpoint it may write)."""
    device, main = ctx.device, ctx.is_main
    mixup, schedule = build_mixup(cfg), lr_schedule(cfg)
    iters_per_epoch = len(t.train_loader)
    eval_every = max(1, round(cfg.TRAIN.EVAL_PERIOD * iters_per_epoch))
    total_steps = iters_per_epoch * cfg.SOLVER.MAX_EPOCH
    mean, std = cfg.DATA.MEAN, cfg.DATA.STD
    writer = TensorBoard(out_dir / TENSORBOARD_DIR) if main and cfg.TENSORBOARD.ENABLE else None
    bar = tqdm(total=total_steps, initial=t.start_epoch * iters_per_epoch, disable=not main or None,
               unit="it", dynamic_ncols=True, desc=cfg.BENCHMARK.NAME or cfg.MODEL.ARCH)
    progress = Progress(epoch=float(t.start_epoch))
    window = Window(device, cfg.TRAIN.BATCH_SIZE, StallWatch(warmup_steps=workers + 1), main)
    epoch_clock = DataWait()
    saved, write_s = t.start_epoch, None  # the last checkpoint's epoch, and how long its write took in this run
    for epoch in range(t.start_epoch, cfg.SOLVER.MAX_EPOCH):
        runlog.start(C.EPOCH_START, epoch_num=epoch + 1)
        # Dropout and drop path draw from torch's generator: reseeded per epoch so that a resumed run continues
        # exactly as an uninterrupted one (the data order is seeded by the sampler, MixUp by the step).
        torch.manual_seed((cfg.RNG_SEED * 1000 + epoch) * 1000 + ctx.rank)
        t.train_loader.sampler.set_epoch(epoch)
        t.train_model.train()
        epoch_failures = 0
        epoch_clock.restart()
        batches = timed_batches(t.train_loader, (epoch_clock, window.clock))
        for i, (clips, labels, failed, augment) in enumerate(batches):
            step = epoch * iters_per_epoch + i
            set_lr(t.optimizer, schedule(step / iters_per_epoch))
            # RandAugment / erasing drawn by the loader, applied on the device; MixUp; no host sync (step.py)
            clips, labels = model_input(clips, labels, augment, step, device, mean, std, mixup)
            window.add(train_step(t.train_model, clips, labels, t.optimizer, t.scaler, t.autocast,
                                  cfg.SOLVER.CLIP_GRAD_L2NORM))
            epoch_failures += int(failed.sum())  # a CPU tensor from the loader: no device sync
            bar.update()
            done = step + 1
            window_end = done % cfg.LOG_PERIOD == 0 or done % eval_every == 0
            if window_end:
                seconds, clips_trained = window.report(done, t.optimizer, bar, writer, cfg, workers)  # 1 sync/window
                progress.train_seconds += seconds
                progress.train_clips += clips_trained
            if stop.stop_now(ctx, synced=window_end):
                progress.preempted = stop.line(f"epoch {epoch + 1} step {i + 1}/{iters_per_epoch}", out_dir, saved)
                break
            if done % eval_every == 0 or done == total_steps:
                eval_began = time.perf_counter()
                progress.epoch = done / iters_per_epoch
                reached = _evaluate(cfg, t, ctx, runlog, progress.epoch, done, bar, writer)
                epoch_clock.excluded_s += time.perf_counter() - eval_began
                window.clock.restart()
                if reached:
                    progress.status = C.SUCCESS
                    break
        if progress.preempted:
            break
        _end_epoch(epoch, epoch_failures, epoch_clock, t, ctx, runlog, writer)
        if progress.status == C.SUCCESS:
            break
        # At the end of the last epoch the run finishes instead. The epoch's all-reduce has just synced the host.
        stopping = epoch + 1 < cfg.SOLVER.MAX_EPOCH and stop.stop_now(ctx, synced=True)
        if (epoch + 1) % cfg.TRAIN.CHECKPOINT_PERIOD == 0 or (stopping and checkpoint_fits(write_s)):
            saved, write_s = epoch + 1, _checkpoint(ctx, t, runlog, out_dir, epoch + 1)
        if stopping:
            progress.preempted = stop.line(f"the end of epoch {epoch + 1}", out_dir, saved)
            break
    bar.close()
    if writer:
        writer.close()
    return progress


def _evaluate(cfg: CfgNode, t: Training, ctx: distributed.Context, runlog: RunLog, epoch: float, done: int,
              bar, writer) -> bool:
    """One timed evaluation, logged with its counts; True when it reached the target."""
    runlog.start(C.EVAL_START, epoch_num=epoch)
    correct, total = evaluate(t.model, t.val_loader, ctx.device, cfg.DATA.MEAN, cfg.DATA.STD, t.autocast)
    top1, eval_ms = 100.0 * correct / total, now_ms()
    runlog.event(C.EVAL_ACCURACY, top1, time_ms=eval_ms, epoch_num=epoch, correct=correct,
                 total=total)  # the counts let the scorer recompute top-1
    runlog.end(C.EVAL_STOP, time_ms=eval_ms, epoch_num=epoch)
    if writer:
        writer.add_scalar("val/top1", top1, done)
    target = cfg.BENCHMARK.TARGET_TOP1
    if ctx.is_main:
        bar.write(f"epoch {epoch:7.2f}  val top-1 {top1:6.2f}% ({correct}/{total}), target {target:.2f}%, "
                  f"{(eval_ms - t.run_start_ms) / 1000.0:.1f} s since run_start")
    return correct * 100.0 >= target * total


def _checkpoint(ctx: distributed.Context, t: Training, runlog: RunLog, out_dir: Path, epoch: int) -> float:
    """Write and log the checkpoint after `epoch` epochs; return how long rank 0 took, on every process (a
    write error on rank 0 stops every process with its line)."""
    distributed.sync_bn_buffers(t.model)  # every process: the state saved is the one all of them hold

    def write() -> float:
        began = time.perf_counter()
        save_checkpoint(out_dir / CHECKPOINT_FILE, training_state(
            t.model, t.optimizer, t.scaler, epoch, t.decode_failures, t.data_wait, t.run_start_ms, t.precision))
        runlog.event(CHECKPOINT, epoch, epoch_num=epoch)
        return time.perf_counter() - began

    return _on_main(ctx, write)


def _end_epoch(epoch: int, failures: int, clock: DataWait, t: Training, ctx: distributed.Context, runlog: RunLog,
               writer) -> None:
    """Sum the epoch's decode failures and data wait over processes, record and log them."""
    loop_s = clock.loop_s()
    failures, wait_s = _reduce_epoch(failures, clock.wait_s, ctx)
    t.data_wait.append([wait_s, loop_s])
    if writer:
        writer.add_scalar("train/data_wait_fraction_epoch", wait_s / loop_s, epoch + 1)
    t.decode_failures += failures
    runlog.event(DECODE_FAILURES, failures, epoch_num=epoch + 1)
    runlog.end(C.EPOCH_STOP, epoch_num=epoch + 1)


def _gather_energy(meter: GpuEnergy, ctx: distributed.Context) -> dict | None:
    """{"per_device": joules of each process's GPU, by rank, "total": their sum}, or None when any process
    could not measure (one all-reduce)."""
    joules = meter.joules() if meter.unavailable is None else None
    values = torch.zeros(ctx.world_size, dtype=torch.float64, device=ctx.device)
    values[ctx.rank] = float("nan") if joules is None else joules
    per_device = distributed.all_reduce_sum(values).tolist()
    if any(v != v for v in per_device):  # NaN: some process has no reading
        meter.unavailable = meter.unavailable or NOT_MEASURED_NVML
        return None
    return {"per_device": per_device, "total": sum(per_device)}


def finish(cfg: CfgNode, ctx: distributed.Context, t: Training, progress: Progress, runlog: RunLog, out_dir: Path,
           workers: int) -> dict | None:
    """Stop the clock (run_stop) and, on rank 0, write result.json (vmb.record.schema.Result) from the run log's
    evaluations; return it as a dict.

    result.json is written first, then run_stop logged; if that fails, result.json is removed: a full disk at
    either write leaves a run that a rerun resumes."""
    run_stop_ms = now_ms()
    energy = _gather_energy(t.energy, ctx)
    if not ctx.is_main:
        return None
    evals = effective_evals(read_events(out_dir / RUN_LOG))  # the log is the one source of truth
    data_wait = t.data_wait
    result = Result(
        benchmark=cfg.BENCHMARK.NAME,
        arch=cfg.MODEL.ARCH,
        status=progress.status,
        time_to_target_s=(run_stop_ms - t.run_start_ms) / 1000.0,
        run_start_ms=t.run_start_ms,
        run_stop_ms=run_stop_ms,
        target_top1=cfg.BENCHMARK.TARGET_TOP1,
        best_top1=max((e.value for e in evals), default=0.0),
        epochs=progress.epoch,
        evals=[{"epoch": e.metadata["epoch_num"], "top1": e.value,
                "elapsed_s": (e.time_ms - t.run_start_ms) / 1000.0} for e in evals],
        n_devices=ctx.world_size,
        device_type=ctx.device.type,
        global_batch_size=cfg.TRAIN.BATCH_SIZE,
        seed=cfg.RNG_SEED,
        train_clips_per_s=progress.train_clips / progress.train_seconds if progress.train_seconds else None,
        decode_failures=t.decode_failures,
        num_workers=workers,
        decoding_backend=cfg.DATA.DECODING_BACKEND,
        data_wait_fraction=sum(w for w, _ in data_wait) / sum(s for _, s in data_wait) if data_wait else None,
        data_wait_fraction_per_epoch=[w / s for w, s in data_wait],
        config_digest=config_digest(cfg),
        fixed_config_digest=config_digest(cfg, exclude=rules.RESOURCE_KEYS),
        # manifest.json's fingerprint (or the labelled fallback): no video byte is read, no cache warmed.
        dataset_fingerprint=dataset_fingerprint(cfg.DATA.PATH_TO_DATA_DIR, cfg.MODEL.NUM_CLASSES,
                                                cfg.DATA.PATH_PREFIX),
        division=cfg.BENCHMARK.DIVISION,
        benchmark_version=cfg.BENCHMARK.VERSION,
        # NVML, per GPU and in total over run_start..run_stop; null with the reason where not measured
        energy_j=energy,
        energy_note=t.energy.unavailable if energy is None else None,
        **code_provenance(),  # vmb_version, benchmark_digest, source_digest, git_commit, git_dirty
    ).to_json()
    write_text_atomic(out_dir / RESULT, _json(result))
    try:
        runlog.end(C.RUN_STOP, time_ms=run_stop_ms, status=progress.status, epoch_num=progress.epoch)
    except WriteError:
        (out_dir / RESULT).unlink()  # without run_stop the run is not finished, and a rerun resumes it
        raise
    return result


def check_setup(cfg: CfgNode, device: torch.device) -> None:
    """Refuse, with one line, a setup that cannot run on this process's device, before anything is written to
    OUTPUT_DIR (no run log, nothing to resume): an on-device decoding backend without CUDA, a precision the
    device does not run natively. (The process count is checked by `distributed.setup`.)"""
    check_decoding_device(cfg.DATA.DECODING_BACKEND, device)
    training_precision(cfg, device)


def run(cfg: CfgNode) -> dict | None:
    """Train `cfg` to its target in this process (one of possibly several); return result.json on rank 0.

    The timed path: `initialise` (untimed, ends at run_start) -> `train_to_target` -> `finish` (run_stop).

    Raises:
        Preempted: a preemption signal stopped the run (vmb.engine.preemption), whose line is printed on stderr;
            OUTPUT_DIR is resumable.
    """
    workers = num_workers_here(cfg.DATA_LOADER.NUM_WORKERS, cfg.DATA.DECODING_BACKEND)
    ctx = distributed.setup(cfg.NUM_GPUS, workers)
    out_dir = Path(cfg.OUTPUT_DIR)
    runlog = None
    try:
        check_setup(cfg, ctx.device)
        interrupted = _on_main(ctx, lambda: prepare_output_dir(out_dir, cfg.TRAIN.AUTO_RESUME))
        runlog = RunLog(out_dir / RUN_LOG, ctx.is_main)
        training = initialise(cfg, ctx, out_dir, runlog, interrupted, workers)
        with preemptible(out_dir) as stop:
            progress = train_to_target(cfg, ctx, training, runlog, out_dir, workers, stop)
            if progress.preempted:
                stop.raise_preempted(progress.preempted)
            return finish(cfg, ctx, training, progress, runlog, out_dir, workers)
    finally:
        if runlog is not None:
            runlog.close()
        distributed.teardown()
