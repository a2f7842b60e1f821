"""The timed run: train until validation top-1 reaches the target, as in MLPerf Training.

The clock is the run log's wall clock: run_start is logged before any video is decoded (before it, the
untimed pre-flight only opens each listed file's header; vmb.data.preflight), run_stop right after the first
evaluation that reaches the target. Evaluation and checkpointing count; nothing pauses the clock, not even a
restart (the first run_start stays).

The loop also measures how long it waits for its next batch (`data_wait_fraction` in result.json, TensorBoard
and the progress bar) and warns once when the run is input-bound.
"""
from __future__ import annotations

import json
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Iterable, Iterator

import torch
import torch.nn.functional as F
from fvcore.common.config import CfgNode
from mlperf_logging.mllog import constants as C
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import vmb
from vmb.record import rules
from vmb.record.fingerprint import dataset_fingerprint
from vmb.record.runlog import CONFIG, DECODE_FAILURES, RESULT, RESUME, RUN_LOG, SYSTEM, RunLog, find, read_events
from vmb.record.system import describe_system
from vmb.config import config_digest
from vmb.data.loader import build_loaders, num_workers_here, processes_per_node, usable_cores
from vmb.data.preflight import check_dataset
from vmb.data.synthetic import SyntheticSpec, ensure_synthetic_dataset
from vmb.data.augment import apply_clip_augment
from vmb.data.transforms import normalize
from vmb.engine import distributed
from vmb.engine.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from vmb.engine.evaluate import evaluate
from vmb.engine.mixup import build_mixup
from vmb.engine.optim import build_optimizer, lr_schedule, set_lr
from vmb.errors import DataError, VMBError
from vmb.models.build import build_model

NUM_WORKERS = "vmb_num_workers"  # our own run-log key: DATA_LOADER.NUM_WORKERS as resolved on this machine
# Above this share of the loop's time spent waiting for data the run is input-bound: the devices idle for a
# tenth of training or more, four times MLPerf's run-to-run spread (+-2.5 %) and far above timer noise, so
# the input should be fixed before the result says anything about the accelerators.
DATA_WAIT_WARN = 0.10


def _now_ms() -> int:
    return int(time.time() * 1000)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


class DataWait:
    """Host seconds the training loop spent blocked on its next batch (`wait_s`), and its wall seconds less
    `excluded_s` (evaluations), since the last `restart()`."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.start, self.wait_s, self.excluded_s = time.perf_counter(), 0.0, 0.0

    def loop_s(self) -> float:
        return time.perf_counter() - self.start - self.excluded_s


def timed_batches(loader: Iterable, clocks: tuple[DataWait, ...]) -> Iterator:
    """The loader's batches; the time spent waiting for each is added to every clock in `clocks`.

    Host time (time.perf_counter) only, no device sync. On CUDA this is still the stall: the loop queues a
    step's kernels and copies asynchronously and comes straight back for the next batch, so it blocks here
    only while the loader has no batch ready. As the devices' idle time for want of data it is high by at
    most the work still queued on the device when the wait begins (under one step), never low.
    """
    batches = iter(loader)
    while True:
        start = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            return
        waited = time.perf_counter() - start
        for clock in clocks:
            clock.wait_s += waited
        yield batch


class StallWatch:
    """Decides, once per process, that the run is input-bound: the logging windows that begin after the
    warm-up waited for data more than DATA_WAIT_WARN of their time, all together.

    The warm-up is the first `warmup_steps` steps of the first epoch this process runs: the workers start
    then, and each one's first batch costs a whole batch of decoding however fast the loader is afterwards.
    """

    def __init__(self, warmup_steps: int) -> None:
        self.warmup_steps, self.wait_s, self.loop_s, self.warned = warmup_steps, 0.0, 0.0, False

    def input_bound(self, first_step: int, wait_s: float, loop_s: float) -> bool:
        """Add a window that began at this process's step `first_step` (1-based); True the first time only."""
        if first_step <= self.warmup_steps:
            return False
        self.wait_s, self.loop_s = self.wait_s + wait_s, self.loop_s + loop_s
        if self.warned or self.wait_s <= DATA_WAIT_WARN * self.loop_s:
            return False
        self.warned = True
        return True


def input_bound_message(fraction: float, workers: int, cores: int, backend: str) -> str:
    """The one warning an input-bound run gets: what was measured and which keys to change (`cores`: usable
    cores per training process, so that the reader sees whether more workers can help)."""
    return (f"warning: input-bound: the training loop waited for data {fraction:.0%} of the time after warm-up "
            f"(above {DATA_WAIT_WARN:.0%}), so the devices idled; raise DATA_LOADER.NUM_WORKERS (now {workers}, "
            f"with {cores} core(s) per training process), try another DATA.DECODING_BACKEND (now {backend}) or "
            "use prepared data (tools/prepare_kinetics20.py); see docs/DATA.md")


def prepare_output_dir(out_dir: Path) -> int | None:
    """Create OUTPUT_DIR and return the run_start time of an interrupted run in it (None for a new run).

    Refuses a folder that holds a finished run; sets aside the log of a run that died before run_start.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise VMBError(f"OUTPUT_DIR {out_dir} is not writable ({exc.strerror}); choose another OUTPUT_DIR") from None
    if (out_dir / RESULT).exists():
        raise VMBError(f"OUTPUT_DIR {out_dir} already holds a finished run; choose a new OUTPUT_DIR")
    log_path = out_dir / RUN_LOG
    if not log_path.exists():
        return None
    events = read_events(log_path)
    if find(events, C.RUN_STOP):
        raise VMBError(f"OUTPUT_DIR {out_dir} already holds a finished run; choose a new OUTPUT_DIR")
    starts = find(events, C.RUN_START)
    if not starts:
        os.replace(log_path, out_dir / f"run_log.before_run_start.{_now_ms()}.txt")
        return None
    return starts[0].time_ms


def _log_submission(runlog: RunLog, cfg: CfgNode, world_size: int) -> None:
    """The MLPerf header: who/what is run, the seed and the hyperparameters."""
    runlog.event(C.SUBMISSION_BENCHMARK, cfg.BENCHMARK.NAME)
    runlog.event(C.SUBMISSION_DIVISION, "closed")
    runlog.event(C.SUBMISSION_STATUS, "onprem")
    runlog.event(C.SUBMISSION_ORG, "vmb")
    runlog.event(C.SUBMISSION_PLATFORM, f"{world_size}x{'cuda' if distributed.use_cuda(cfg.NUM_GPUS) else 'cpu'}")
    runlog.event(C.SEED, cfg.RNG_SEED)
    runlog.event(C.GLOBAL_BATCH_SIZE, cfg.TRAIN.BATCH_SIZE)
    runlog.event(C.OPT_NAME, cfg.SOLVER.OPTIMIZING_METHOD)
    runlog.event(C.OPT_BASE_LR, cfg.SOLVER.BASE_LR)
    runlog.event(C.OPT_WEIGHT_DECAY, cfg.SOLVER.WEIGHT_DECAY)
    runlog.event(C.OPT_LR_WARMUP_EPOCHS, cfg.SOLVER.WARMUP_EPOCHS)
    runlog.event("opt_lr_warmup_start_lr", cfg.SOLVER.WARMUP_START_LR)
    runlog.event("opt_lr_schedule", cfg.SOLVER.LR_POLICY)
    runlog.event("opt_end_learning_rate", cfg.SOLVER.COSINE_END_LR)
    runlog.event("opt_max_epoch", cfg.SOLVER.MAX_EPOCH)
    runlog.event("opt_gradient_clip_norm", cfg.SOLVER.CLIP_GRAD_L2NORM)
    runlog.event("target_top1", cfg.BENCHMARK.TARGET_TOP1)


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


def _reduce_epoch(failures: int, wait_s: float, ctx: distributed.Context) -> tuple[int, float]:
    """(decode failures summed over processes, the longest data wait of any process) in one all-reduce.

    The longest: a process whose loader is behind holds every other one up in the gradient all-reduce,
    where their wait does not show as data wait.
    """
    values = torch.zeros(1 + ctx.world_size, dtype=torch.float64, device=ctx.device)
    values[0], values[1 + ctx.rank] = failures, wait_s
    values = distributed.all_reduce_sum(values).tolist()  # the epoch's one host sync
    return int(values[0]), max(values[1:])


def _train_step(model, clips, labels, optimizer, scaler, mixup, autocast, clip_norm: float):
    """One optimisation step; returns the loss as a device tensor. No host sync, except that a GradScaler in
    use (fp16 AMP only) reads its inf/NaN check on the host in `scaler.step`: a sync per step, by design."""
    if mixup is not None:
        clips, labels = mixup(clips, labels)
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


def run(cfg: CfgNode) -> dict | None:
    """Train `cfg` to its target in this process (one of possibly several); return result.json on rank 0."""
    workers = num_workers_here(cfg.DATA_LOADER.NUM_WORKERS)
    ctx = distributed.setup(cfg.NUM_GPUS, workers)
    out_dir = Path(cfg.OUTPUT_DIR)
    resumed_from_ms = distributed.broadcast_object(prepare_output_dir(out_dir) if ctx.is_main else None)
    runlog = RunLog(out_dir / RUN_LOG, ctx.is_main)
    try:
        return _run(cfg, ctx, out_dir, runlog, resumed_from_ms, workers)
    finally:
        runlog.close()
        distributed.teardown()


def _run(cfg: CfgNode, ctx: distributed.Context, out_dir: Path, runlog: RunLog, run_start_ms: int | None,
         workers: int):
    device, main = ctx.device, ctx.is_main
    fixed_digest = config_digest(cfg, exclude=rules.RESOURCE_KEYS)
    if run_start_ms is None:
        runlog.start(C.INIT_START)
        _log_submission(runlog, cfg, ctx.world_size)
        runlog.event(NUM_WORKERS, workers)
    if main:
        (out_dir / CONFIG).write_text(cfg.dump())
        num_nodes = max(1, ctx.world_size // int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world_size)))
        _write_json(out_dir / SYSTEM, describe_system(device.type, ctx.world_size, num_nodes))
        if cfg.SYNTHETIC.ENABLE:  # offline data generation: untimed, as MLPerf allows for data preparation
            ensure_synthetic_dataset(cfg.DATA.PATH_TO_DATA_DIR, SyntheticSpec(
                train_per_class=cfg.SYNTHETIC.TRAIN_PER_CLASS, val_per_class=cfg.SYNTHETIC.VAL_PER_CLASS,
                seed=cfg.SYNTHETIC.SEED))
    distributed.barrier()
    _preflight(cfg, ctx)

    torch.manual_seed(cfg.RNG_SEED * 1000 + ctx.rank)  # init is identical on every rank: DDP broadcasts rank 0's
    model = build_model(cfg).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last_3d)
    train_model = model
    if ctx.world_size > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = build_optimizer(model, cfg)
    amp = cfg.TRAIN.MIXED_PRECISION and device.type == "cuda"
    amp_dtype = getattr(torch, cfg.TRAIN.AMP_DTYPE)
    precision = f"amp_{cfg.TRAIN.AMP_DTYPE}" if amp else "fp32"
    scaler = torch.amp.GradScaler(device.type, enabled=amp and amp_dtype == torch.float16)
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp else nullcontext()

    start_epoch, evals, decode_failures, data_wait = 0, [], 0, []
    state = load_checkpoint(out_dir / CHECKPOINT_NAME) if cfg.TRAIN.AUTO_RESUME else None
    if state is not None:
        if state["fixed_config_digest"] != fixed_digest:
            raise VMBError(f"{out_dir / CHECKPOINT_NAME} was written by a different config; "
                           "use a new OUTPUT_DIR or delete the checkpoint")
        if state.get("precision", "unknown") != precision:
            raise VMBError(f"{out_dir / CHECKPOINT_NAME} was written in precision {state.get('precision', 'unknown')}, "
                           f"this run is {precision}; resume with the same TRAIN.MIXED_PRECISION / TRAIN.AMP_DTYPE "
                           "or use a new OUTPUT_DIR")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, evals, decode_failures = state["epoch"], state["evals"], state["decode_failures"]
        data_wait = state["data_wait"]

    # The loaders read the split CSVs, but no video is decoded before run_start: workers start on first use.
    train_loader, val_loader = build_loaders(cfg, ctx.rank, ctx.world_size, pin_memory=device.type == "cuda",
                                             workers=workers)
    if run_start_ms is None:
        runlog.end(C.INIT_STOP)
        run_start_ms = _now_ms()
        runlog.start(C.RUN_START, time_ms=run_start_ms)
    else:
        runlog.event(RESUME, value=start_epoch, epoch_num=start_epoch)
    runlog.event(C.TRAIN_SAMPLES, len(train_loader.dataset))
    runlog.event(C.EVAL_SAMPLES, len(val_loader.dataset))
    mixup = build_mixup(cfg)
    schedule = lr_schedule(cfg)
    iters_per_epoch = len(train_loader)
    eval_every = max(1, round(cfg.TRAIN.EVAL_PERIOD * iters_per_epoch))
    total_steps = iters_per_epoch * cfg.SOLVER.MAX_EPOCH
    target = cfg.BENCHMARK.TARGET_TOP1
    mean, std = cfg.DATA.MEAN, cfg.DATA.STD
    writer = SummaryWriter(str(out_dir / "tensorboard")) if main and cfg.TENSORBOARD.ENABLE else None
    progress = tqdm(total=total_steps, initial=start_epoch * iters_per_epoch, disable=not main or None,
                    unit="it", dynamic_ncols=True, desc=cfg.BENCHMARK.NAME or cfg.MODEL.ARCH)

    status, epoch_progress = C.ABORTED, float(start_epoch)
    loss_sum = torch.zeros((), device=device)
    window, window_steps, train_seconds, train_clips = DataWait(), 0, 0.0, 0
    epoch_clock, stall, steps_run, window_first = DataWait(), StallWatch(warmup_steps=workers + 1), 0, 1
    for epoch in range(start_epoch, cfg.SOLVER.MAX_EPOCH):
        runlog.start(C.EPOCH_START, epoch_num=epoch + 1)
        # Dropout, drop path and MixUp draw from torch's generator: reseeded per epoch so that a resumed
        # run continues exactly as an uninterrupted one (the data order is seeded by the sampler).
        torch.manual_seed((cfg.RNG_SEED * 1000 + epoch) * 1000 + ctx.rank)
        train_loader.sampler.set_epoch(epoch)
        train_model.train()
        epoch_failures = 0
        epoch_clock.restart()
        for i, (clips, labels, failed, augment) in enumerate(timed_batches(train_loader, (epoch_clock, window))):
            step = epoch * iters_per_epoch + i
            set_lr(optimizer, schedule(step / iters_per_epoch))
            # RandAugment / erasing drawn by the loader, applied to the uint8 batch on the device (their
            # parameters stay on the host: no sync); normalize's constants live on the device already.
            clips = normalize(apply_clip_augment(clips.to(device, non_blocking=True), augment), mean, std)
            if device.type == "cuda":
                clips = clips.contiguous(memory_format=torch.channels_last_3d)
            labels = labels.to(device, non_blocking=True)
            loss_sum += _train_step(train_model, clips, labels, optimizer, scaler, mixup, autocast,
                                    cfg.SOLVER.CLIP_GRAD_L2NORM)
            epoch_failures += int(failed.sum())  # a CPU tensor from the loader: no device sync
            window_steps += 1
            steps_run += 1
            progress.update()
            done = step + 1
            if done % cfg.LOG_PERIOD == 0 or done % eval_every == 0:
                loss = loss_sum.item() / window_steps  # the one host sync, once per window
                seconds = window.loop_s()
                clips_per_s = window_steps * cfg.TRAIN.BATCH_SIZE / seconds
                wait_fraction = window.wait_s / seconds
                train_seconds += seconds
                train_clips += window_steps * cfg.TRAIN.BATCH_SIZE
                progress.set_postfix(loss=f"{loss:.3f}", clips_s=f"{clips_per_s:.1f}",
                                     data_wait=f"{wait_fraction:.0%}")
                if writer:
                    writer.add_scalar("train/loss", loss, done)
                    writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], done)
                    writer.add_scalar("train/clips_per_s", clips_per_s, done)
                    writer.add_scalar("train/data_wait_fraction", wait_fraction, done)
                if stall.input_bound(window_first, window.wait_s, seconds) and main:
                    cores = usable_cores() // processes_per_node()
                    progress.write(input_bound_message(stall.wait_s / stall.loop_s, workers, cores,
                                                       cfg.DATA.DECODING_BACKEND), file=sys.stderr)
                loss_sum.zero_()
                window.restart()
                window_steps, window_first = 0, steps_run + 1
            if done % eval_every == 0 or done == total_steps:
                eval_began = time.perf_counter()
                epoch_progress = done / iters_per_epoch
                runlog.start(C.EVAL_START, epoch_num=epoch_progress)
                correct, total = evaluate(model, val_loader, device, mean, std, autocast)
                top1, eval_ms = 100.0 * correct / total, _now_ms()
                runlog.event(C.EVAL_ACCURACY, top1, time_ms=eval_ms, epoch_num=epoch_progress, correct=correct,
                             total=total)  # the counts let the scorer recompute top-1
                runlog.end(C.EVAL_STOP, time_ms=eval_ms, epoch_num=epoch_progress)
                evals.append([epoch_progress, top1, (eval_ms - run_start_ms) / 1000.0])
                if writer:
                    writer.add_scalar("val/top1", top1, done)
                if main:
                    progress.write(f"epoch {epoch_progress:7.2f}  val top-1 {top1:6.2f}% ({correct}/{total}), "
                                   f"target {target:.2f}%, {evals[-1][2]:.1f} s since run_start")
                epoch_clock.excluded_s += time.perf_counter() - eval_began
                window.restart()
                if correct * 100.0 >= target * total:
                    status = C.SUCCESS
                    break
        epoch_loop_s = epoch_clock.loop_s()
        epoch_failures, epoch_wait_s = _reduce_epoch(epoch_failures, epoch_clock.wait_s, ctx)
        data_wait.append([epoch_wait_s, epoch_loop_s])
        if writer:
            writer.add_scalar("train/data_wait_fraction_epoch", epoch_wait_s / epoch_loop_s, epoch + 1)
        decode_failures += epoch_failures
        runlog.event(DECODE_FAILURES, epoch_failures, epoch_num=epoch + 1)
        runlog.end(C.EPOCH_STOP, epoch_num=epoch + 1)
        if status == C.SUCCESS:
            break
        if main and (epoch + 1) % cfg.TRAIN.CHECKPOINT_PERIOD == 0:
            save_checkpoint(out_dir / CHECKPOINT_NAME, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "epoch": epoch + 1, "evals": evals, "decode_failures": decode_failures, "data_wait": data_wait,
                "fixed_config_digest": fixed_digest, "precision": precision})
    run_stop_ms = _now_ms()
    runlog.end(C.RUN_STOP, time_ms=run_stop_ms, status=status, epoch_num=epoch_progress)
    progress.close()
    if writer:
        writer.close()
    if not main:
        return None
    result = {
        "benchmark": cfg.BENCHMARK.NAME,
        "arch": cfg.MODEL.ARCH,
        "status": status,
        "time_to_target_s": (run_stop_ms - run_start_ms) / 1000.0,
        "run_start_ms": run_start_ms,
        "run_stop_ms": run_stop_ms,
        "target_top1": target,
        "best_top1": max((e[1] for e in evals), default=0.0),
        "epochs": epoch_progress,
        "evals": [{"epoch": e, "top1": t, "elapsed_s": s} for e, t, s in evals],
        "n_devices": ctx.world_size,
        "device_type": device.type,
        "global_batch_size": cfg.TRAIN.BATCH_SIZE,
        "seed": cfg.RNG_SEED,
        "train_clips_per_s": train_clips / train_seconds if train_seconds else None,
        "decode_failures": decode_failures,
        "num_workers": workers,
        "decoding_backend": cfg.DATA.DECODING_BACKEND,
        "data_wait_fraction": sum(w for w, _ in data_wait) / sum(s for _, s in data_wait) if data_wait else None,
        "data_wait_fraction_per_epoch": [w / s for w, s in data_wait],
        "config_digest": config_digest(cfg),
        "fixed_config_digest": fixed_digest,
        # manifest.json's fingerprint (or the labelled fallback): no video byte is read, no cache warmed.
        "dataset_fingerprint": dataset_fingerprint(cfg.DATA.PATH_TO_DATA_DIR, cfg.MODEL.NUM_CLASSES,
                                                   cfg.DATA.PATH_PREFIX),
        "vmb_version": vmb.__version__,
    }
    _write_json(out_dir / RESULT, result)
    return result
