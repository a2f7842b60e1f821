"""Inference speed of zoo models (tools/bench_infer.py): per model x batch size x runtime x precision, the latency
of one forward pass (mean, p50, p95, p99), the total timed and the throughput in clips/s.

Each cell runs `--warmup` untimed iterations, then `--iters` timed ones (or as many as fit in `--seconds`), under
torch.inference_mode() with the model's random weights (vmb.speed.export.build_zoo_model, the same for every
runtime). Runtimes (vmb.speed.runtimes): torch (eager; bf16 and fp16 under torch.autocast, the weights and the
input staying fp32), compile (torch.compile, compiled in the warm-up), onnxruntime and tensorrt (on the model's
ONNX export, made once per model in a temporary folder, or the file given with --onnx; int8 is its QDQ
quantization, calibrated on --calib-clips random clips, as a zoo model has no data). The clips are put into a
runtime's form before the timing. On CUDA every iteration of torch, compile and tensorrt is timed by a pair of
CUDA events with one synchronize at the end of the cell, so that timing adds no host sync; onnxruntime (whose run
returns once done) and the CPU by time.perf_counter. A cell that cannot run (a precision the device lacks, a
runtime not installed or not for this device, an operator a runtime does not support) is skipped with its reason,
a batch that does not fit in memory is reported as OOM, and Ctrl-C keeps the finished cells.
"""
from __future__ import annotations

import argparse
import functools
import gc
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from vmb.engine.precision import unsupported  # noqa: F401 (re-exported: the tools' one precision rule)
from vmb.errors import ConfigError
from vmb.speed.export import DeployError, build_zoo_model, check_matches, random_check_clips, read_metadata, zoo_spec
from vmb.speed.latency import summarize
from vmb.speed.memory import is_oom
from vmb.speed.quantize import (DEFAULT_CALIBRATION_CLIPS, RANDOM_CLIPS, check_calibration_size,
                                random_calibration)
from vmb.speed.runtimes import DEPLOY_PRECISIONS, ONNX_RUNTIMES, RUNTIMES, ModelRunners, OnnxFiles, runtime_versions

if TYPE_CHECKING:
    from vmb.models.zoo import ZooModel

DEFAULT_ITERS = 20
OK, SKIPPED, OOM, INTERRUPTED = "ok", "skipped", "OOM", "interrupted"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Inference latency and throughput of zoo models, per model x batch size x runtime x precision.")
    parser.add_argument("--models", default="x3d_m,mvit_b_16x4,slow_r50,slowfast_r50",
                        help="zoo models, comma-separated (default: %(default)s)")
    parser.add_argument("--batch-sizes", default="1,8", help="clips per forward pass, comma-separated (default: "
                                                            "%(default)s)")
    parser.add_argument("--runtime", default="torch",
                        help=f"{', '.join(RUNTIMES)}, comma-separated (default: %(default)s; docs/SPEED.md)")
    parser.add_argument("--precision", default="fp32,bf16",
                        help="fp32, bf16 (torch and compile), fp16 (CUDA only), int8 (onnxruntime on the CPU, "
                             "tensorrt), comma-separated (default: %(default)s)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--iters", type=int, help=f"timed iterations per cell (default: {DEFAULT_ITERS})")
    budget.add_argument("--seconds", type=float, help="timed seconds per cell instead of a number of iterations")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations first (default: %(default)s)")
    parser.add_argument("--channels-last", action="store_true", help="model and input in channels_last_3d")
    parser.add_argument("--onnx", type=Path, action="append", default=[], metavar="FILE",
                        help="an ONNX export (tools/export.py --model NAME) for the onnxruntime and tensorrt cells of "
                             "the model its metadata names; repeat for several models (default: exported here)")
    parser.add_argument("--calib-clips", type=int, default=DEFAULT_CALIBRATION_CLIPS, metavar="N",
                        help="int8: calibration clips, random (a zoo model has no data; default: %(default)s)")
    parser.add_argument("--calib-seed", type=int, default=0, metavar="S",
                        help="int8: seed of the random calibration clips (default: %(default)s)")
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
        ConfigError: an unknown model, runtime or precision, a non-positive batch size or budget, too few int8
            calibration clips, an --onnx file without an ONNX runtime or of another model, or no CUDA device.
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
    args.runtime = _split(args.runtime, "--runtime")
    args.precision = _split(args.precision, "--precision")
    for option, values, valid in (("--runtime", args.runtime, RUNTIMES),
                                  ("--precision", args.precision, DEPLOY_PRECISIONS)):
        unknown = [v for v in values if v not in valid]
        if unknown:
            raise ConfigError(f"{option} {unknown[0]}: unknown; valid: {', '.join(valid)}")
    if "int8" in args.precision and set(args.runtime) & set(ONNX_RUNTIMES):
        check_calibration_size(args.calib_clips, max(args.batch_sizes))
    if args.onnx and not set(args.runtime) & set(ONNX_RUNTIMES):
        raise ConfigError(f"--onnx {args.onnx[0]}: only the {' and '.join(ONNX_RUNTIMES)} runtimes run ONNX files; "
                          "add --runtime onnxruntime")
    args.onnx = _onnx_files(args.onnx, args.models)
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


def _onnx_files(paths: list[Path], models: list[str]) -> dict[str, Path]:
    """{zoo model: --onnx file}, each file checked against the model its metadata names (one line if it is not
    an export of one of `models` with their random weights and standard view)."""
    from vmb.models.zoo import get_zoo_model

    files: dict[str, Path] = {}
    for path in paths:
        name = read_metadata(path).get("model", "")
        if name not in models or name in files:
            raise ConfigError(f"--onnx {path}: an ONNX file of {name or 'an unnamed model (no VMB metadata)'}, "
                              f"{'given twice' if name in files else 'not one of --models ' + ','.join(models)}")
        check_matches(path, zoo_spec(get_zoo_model(name)), f"tools/export.py --model {name} --out FILE")
        files[name] = path
    return files


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


def _cell(zoo_model: ZooModel, batch_size: int, runtime: str, precision: str, status: str, note: str = "") -> dict:
    return {"model": zoo_model.name, "arch": zoo_model.arch, "batch_size": batch_size, "runtime": runtime,
            "precision": precision, "status": status, "note": note}


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"


def measure_cell(runners: ModelRunners, zoo_model: ZooModel, batch_size: int, runtime: str, precision: str,
                 args: argparse.Namespace) -> dict:
    """One cell: its row, with the statistics and latencies if measured, or why not (skipped, OOM)."""
    try:
        runner = runners.get(runtime, precision)
    except DeployError as exc:
        return _cell(zoo_model, batch_size, runtime, precision, SKIPPED, str(exc))
    timer = torch.device("cpu") if runner.host_timed else args.device
    try:
        clips = zoo_model.example_input(batch_size, args.device)
        if args.channels_last:
            clips = _to_channels_last(clips)
        with torch.inference_mode():
            prepared = runner.prepare(clips)
            with runner.context:
                latencies = time_iterations(lambda: runner.run(prepared), timer, args.warmup, args.iters,
                                            args.seconds)
    except Exception as exc:  # eager torch's own errors propagate; another runtime's fail this cell only
        if is_oom(exc) or "failed to allocate memory" in str(exc).lower():  # the latter: ONNX Runtime's
            latencies = None
        elif runtime != "torch":  # torch.compile fails at the first call, in the warm-up
            what = "torch.compile" if runtime == "compile" else runtime
            return _cell(zoo_model, batch_size, runtime, precision, SKIPPED, f"{what} failed: {_first_line(exc)}")
        else:
            raise
    clips = prepared = None
    if latencies is None:
        _free_memory(args.device)
        return _cell(zoo_model, batch_size, runtime, precision, OOM, f"batch {batch_size} does not fit in memory")
    stats = summarize(latencies, batch_size)
    return {**_cell(zoo_model, batch_size, runtime, precision, OK), "timer": _timer_name(timer), **vars(stats),
            "latencies_ms": latencies}


def _timer_name(device: torch.device) -> str:
    return "CUDA events" if device.type == "cuda" else "time.perf_counter"


def describe_model(model: torch.nn.Module, zoo_model: ZooModel) -> dict:
    """What the header says about a model: family, view, input shape of one clip, parameters."""
    clip = zoo_model.example_input(1)
    shapes = [clip] if isinstance(clip, torch.Tensor) else clip
    return {"arch": zoo_model.arch, "num_frames": zoo_model.num_frames, "crop_size": zoo_model.crop_size,
            "input": " + ".join("x".join(map(str, c.shape[1:])) for c in shapes),
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "published_params_m": zoo_model.published_params_m}


def run_cells(args: argparse.Namespace, header: dict, log: Callable[[str], None]) -> tuple[list[dict], bool]:
    """Measure every cell (model x batch size x runtime x precision) in order; return the rows and whether Ctrl-C
    cut the run short (then the last row is the cut cell, status "interrupted"). ONNX files are made in a
    temporary folder, removed at the end."""
    from vmb.models.zoo import get_zoo_model

    rows: list[dict] = []
    zoo_model, batch_size = get_zoo_model(args.models[0]), args.batch_sizes[0]
    runtime, precision = args.runtime[0], args.precision[0]
    largest = max(args.batch_sizes)
    with tempfile.TemporaryDirectory(prefix="vmb-bench-infer-") as folder:
        try:
            for name in args.models:
                zoo_model = get_zoo_model(name)
                batch_size, runtime, precision = args.batch_sizes[0], args.runtime[0], args.precision[0]
                model = build_zoo_model(zoo_model).to(args.device)
                if args.channels_last:
                    model = model.to(memory_format=torch.channels_last_3d)
                header["models"][name] = describe_model(model, zoo_model)
                spec = zoo_spec(zoo_model)
                files = OnnxFiles(spec, Path(folder), functools.partial(build_zoo_model, zoo_model),
                                  functools.partial(random_check_clips, spec),
                                  functools.partial(random_calibration, spec, args.calib_clips, args.calib_seed,
                                                    largest), given=args.onnx.get(name))
                header["models"][name]["deployment"] = files.info  # filled as the files are made
                runners = ModelRunners(model, args.device, files.path, largest)
                for batch_size in args.batch_sizes:
                    for runtime in args.runtime:
                        for precision in args.precision:
                            rows.append(measure_cell(runners, zoo_model, batch_size, runtime, precision, args))
                            log(progress_line(rows[-1]))
                model = runners = None
                _free_memory(args.device)
        except KeyboardInterrupt:
            rows.append(_cell(zoo_model, batch_size, runtime, precision, INTERRUPTED,
                              "Ctrl-C: this and later cells not run"))
            log(progress_line(rows[-1]))
            return rows, True
    return rows, False


def progress_line(row: dict) -> str:
    where = f"{row['model']} batch {row['batch_size']} {row['runtime']} {row['precision']}"
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
            "timer": _timer_name(args.device),
            "numerics": set_numerics(args.device), "iters": args.iters, "seconds": args.seconds,
            "warmup": args.warmup, "channels_last": args.channels_last, "runtimes": runtime_versions(args.runtime),
            "calibration": {"clips": args.calib_clips, "seed": args.calib_seed, "source": RANDOM_CLIPS}
            if "int8" in args.precision else None,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "models": {}}
