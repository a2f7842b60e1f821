"""Inference speed of zoo models (tools/bench_infer.py): per model x batch size x precision, the latency of one
forward pass (mean, p50, p95, p99), the total timed and the throughput in clips/s.

Each cell runs `--warmup` untimed iterations, then `--iters` timed ones (or as many as fit in `--seconds`), under
torch.inference_mode() on the eval-mode model with random weights; bf16 and fp16 run under torch.autocast (the
weights and the input stay fp32). On CUDA every iteration is timed by a pair of CUDA events with one synchronize
at the end of the cell, so that timing adds no host sync; on the CPU by time.perf_counter. A precision the device
lacks is skipped, a batch that does not fit in memory is reported as OOM, and Ctrl-C keeps the finished cells.
"""
from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from vmb.engine.precision import PRECISIONS, unsupported
from vmb.engine.precision import autocast as precision_autocast
from vmb.errors import ConfigError
from vmb.speed.latency import summarize
from vmb.speed.memory import is_oom

if TYPE_CHECKING:
    from vmb.models.zoo import ZooModel

DEFAULT_ITERS = 20
OK, SKIPPED, OOM, INTERRUPTED = "ok", "skipped", "OOM", "interrupted"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Inference latency and throughput of zoo models, per model x batch size x precision.")
    parser.add_argument("--models", default="x3d_m,mvit_b_16x4,slow_r50,slowfast_r50",
                        help="zoo models, comma-separated (default: %(default)s)")
    parser.add_argument("--batch-sizes", default="1,8", help="clips per forward pass, comma-separated (default: "
                                                            "%(default)s)")
    parser.add_argument("--precision", default="fp32,bf16",
                        help="fp32, bf16 (CPU and CUDA), fp16 (CUDA only), comma-separated (default: %(default)s)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--iters", type=int, help=f"timed iterations per cell (default: {DEFAULT_ITERS})")
    budget.add_argument("--seconds", type=float, help="timed seconds per cell instead of a number of iterations")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations first (default: %(default)s)")
    parser.add_argument("--channels-last", action="store_true", help="model and input in channels_last_3d")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (compiled in the warm-up)")
    parser.add_argument("--device", choices=("cpu", "cuda"),
                        help="default: cuda if a CUDA device is visible, else cpu")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--csv", type=Path, metavar="FILE", help="also write the results as CSV")
    parser.add_argument("--report", type=Path, metavar="DIR", help="also write report.md, report.html and plots")
    return parser


def _split(text: str, option: str) -> list[str]:
    items = list(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))
    if not items:
        raise ConfigError(f"{option} is empty: give one or more values separated by commas")
    return items


def check_args(args: argparse.Namespace) -> None:
    """Validate and normalise `args` in place: lists parsed, models looked up, device chosen.

    Raises:
        ConfigError: an unknown model or precision, a non-positive batch size or budget, or no CUDA device.
    """
    from vmb.models.zoo import get_zoo_model

    args.models = [get_zoo_model(name).name for name in _split(args.models, "--models")]
    try:
        args.batch_sizes = [int(b) for b in _split(args.batch_sizes, "--batch-sizes")]
    except ValueError:
        raise ConfigError(f"--batch-sizes {args.batch_sizes}: expected integers separated by commas, e.g. 1,8") \
            from None
    if min(args.batch_sizes) < 1:
        raise ConfigError(f"--batch-sizes {','.join(map(str, args.batch_sizes))}: batch sizes must be at least 1")
    args.precision = _split(args.precision, "--precision")
    unknown = [p for p in args.precision if p not in PRECISIONS]
    if unknown:
        raise ConfigError(f"--precision {unknown[0]}: unknown; valid: {', '.join(PRECISIONS)}")
    if args.seconds is None and args.iters is None:
        args.iters = DEFAULT_ITERS
    if (args.iters is not None and args.iters < 1) or (args.seconds is not None and args.seconds <= 0) \
            or args.warmup < 0:
        raise ConfigError("--iters and --seconds must be positive, --warmup at least 0")
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: torch sees no CUDA device; use --device cpu")
    args.device = torch.device(args.device)


def _to_channels_last(clips: torch.Tensor | list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
    if isinstance(clips, list):
        return [c.contiguous(memory_format=torch.channels_last_3d) for c in clips]
    return clips.contiguous(memory_format=torch.channels_last_3d)


def time_iterations(step: Callable[[], object], device: torch.device, warmup: int, iters: int | None,
                    seconds: float | None) -> list[float]:
    """Run `step` `warmup` times untimed, then `iters` times (or until `seconds` have passed, at least once);
    return the latency of each timed run in ms.

    On CUDA, a pair of events around each run, read after one synchronize at the end; the time budget is checked
    on the host clock, which runs ahead of the GPU by the queued work at most.
    """
    def more(done: int, start: float) -> bool:
        return done < iters if iters is not None else done == 0 or time.perf_counter() - start < seconds

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        events = []
        while more(len(events), start):
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            step()
            end.record()
            events.append((begin, end))
        torch.cuda.synchronize(device)
        return [begin.elapsed_time(end) for begin, end in events]
    latencies: list[float] = []
    start = time.perf_counter()
    while more(len(latencies), start):
        t0 = time.perf_counter()
        step()
        latencies.append((time.perf_counter() - t0) * 1000)
    return latencies


def _free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _cell(zoo_model: ZooModel, batch_size: int, precision: str, status: str, note: str = "") -> dict:
    return {"model": zoo_model.name, "arch": zoo_model.arch, "batch_size": batch_size, "precision": precision,
            "status": status, "note": note}


def measure_cell(model: torch.nn.Module, zoo_model: ZooModel, batch_size: int, precision: str,
                 args: argparse.Namespace) -> dict:
    """One cell: its row, with the statistics and latencies if measured, or why not (skipped, OOM)."""
    reason = unsupported(precision, args.device)
    if reason:
        return _cell(zoo_model, batch_size, precision, SKIPPED, reason)
    autocast = precision_autocast(precision, args.device)
    try:
        clips = zoo_model.example_input(batch_size, args.device)
        if args.channels_last:
            clips = _to_channels_last(clips)
        with torch.inference_mode(), autocast:
            latencies = time_iterations(lambda: model(clips), args.device, args.warmup, args.iters, args.seconds)
    except (RuntimeError, MemoryError) as exc:
        if is_oom(exc):
            latencies = None
        elif args.compile:  # torch.compile fails at the first call, as a RuntimeError subclass: this cell only
            return _cell(zoo_model, batch_size, precision, SKIPPED,
                         f"torch.compile failed: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}")
        else:
            raise
    clips = None
    if latencies is None:
        _free_memory(args.device)
        return _cell(zoo_model, batch_size, precision, OOM, f"batch {batch_size} does not fit in memory")
    stats = summarize(latencies, batch_size)
    return {**_cell(zoo_model, batch_size, precision, OK), **vars(stats), "latencies_ms": latencies}


def describe_model(model: torch.nn.Module, zoo_model: ZooModel) -> dict:
    """What the header says about a model: family, view, input shape of one clip, parameters."""
    clip = zoo_model.example_input(1)
    shapes = [clip] if isinstance(clip, torch.Tensor) else clip
    return {"arch": zoo_model.arch, "num_frames": zoo_model.num_frames, "crop_size": zoo_model.crop_size,
            "input": " + ".join("x".join(map(str, c.shape[1:])) for c in shapes),
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "published_params_m": zoo_model.published_params_m}


def run_cells(args: argparse.Namespace, header: dict, log: Callable[[str], None]) -> tuple[list[dict], bool]:
    """Measure every cell (model x batch size x precision) in order; return the rows and whether Ctrl-C cut the
    run short (then the last row is the cut cell, status "interrupted")."""
    from vmb.models.zoo import get_zoo_model

    rows: list[dict] = []
    zoo_model, batch_size, precision = get_zoo_model(args.models[0]), args.batch_sizes[0], args.precision[0]
    try:
        for name in args.models:
            zoo_model = get_zoo_model(name)
            batch_size, precision = args.batch_sizes[0], args.precision[0]
            torch.manual_seed(0)
            model = zoo_model.build().eval().to(args.device)
            if args.channels_last:
                model = model.to(memory_format=torch.channels_last_3d)
            header["models"][name] = describe_model(model, zoo_model)
            runner = torch.compile(model) if args.compile else model
            for batch_size in args.batch_sizes:
                for precision in args.precision:
                    rows.append(measure_cell(runner, zoo_model, batch_size, precision, args))
                    log(progress_line(rows[-1]))
            model = runner = None
            _free_memory(args.device)
    except KeyboardInterrupt:
        rows.append(_cell(zoo_model, batch_size, precision, INTERRUPTED, "Ctrl-C: this and later cells not run"))
        log(progress_line(rows[-1]))
        return rows, True
    return rows, False


def progress_line(row: dict) -> str:
    where = f"{row['model']} batch {row['batch_size']} {row['precision']}"
    if row["status"] != OK:
        return f"{where}: {row['status']} ({row['note']})"
    return f"{where}: {row['iters']} iterations, p50 {row['p50_ms']:.2f} ms, {row['clips_per_s']:.2f} clips/s"


def make_header(args: argparse.Namespace) -> dict:
    """The run's set-up: device, software, options (the models are added as they are built)."""
    from vmb.engine.numerics import set_numerics
    from vmb.record.system import describe_system
    from vmb.reporting import system_line

    return {"system": system_line(describe_system(args.device.type, 1, 1)), "device": str(args.device),
            "device_name": torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else "CPU",
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "timer": "CUDA events" if args.device.type == "cuda" else "time.perf_counter",
            "numerics": set_numerics(args.device), "iters": args.iters, "seconds": args.seconds,
            "warmup": args.warmup, "channels_last": args.channels_last, "compile": args.compile,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "models": {}}
