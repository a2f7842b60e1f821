"""The system check (`tools/system_check.py --out DIR [--budget-min 8]`): every GPU figure VMB needs from a machine,
in one command, within a wall-clock budget.

The check is a list of cells run one after the other. Each cell is a small function that returns its figures (a
dict) or raises: `NotRun` (recorded "not run: <reason>"), `CellTimeout` ("timeout"), anything else ("failed",
with the last lines of its output). A failing cell never stops the others. The cells:

- Environment (always): GPUs, driver (read even where torch sees no GPU: NVML, else /proc/driver/nvidia/version)
  and whether it is new enough for torch's CUDA build, CUDA runtime, arch list, NCCL, native bf16, NVML energy
  counter, CPU, usable cores, memory, library versions.
- Synthetic data: a Kinetics-shaped synthetic set in DIR/data (vmb.data.synthetic, tools/make_synthetic.py),
  sized to the budget (`make_plan`).
- Clips/s per CPU core: VMB's training dataset with the pyav backend on that data, one process, one torch thread
  (vmb.speed.loader_bench's timed cells), per model: the input side of the sizing.
- CUDA tests: `python -m pytest -m cuda` with a JUnit XML report, summarised per test.
- Dry runs: tools/bench_train.py on configs/dryrun/ (the canonical per-GPU batch and precision) per decoding
  backend (pyav with NUM_WORKERS auto, torchcodec_cuda, dali where importable): clips/s, data wait, peak memory,
  GPU utilisation, host syncs per step. Without CUDA one CPU cell runs the smoke X3D config there instead.
- Training (synthetic input): tools/bench_train.py --synthetic, fp32 and bf16, per model; inference:
  tools/bench_infer.py at batch 1 and 8 in fp32, bf16 and fp16.
- Several GPUs (2 or more visible): NCCL all-reduce bus bandwidth (vmb/speed/allreduce_bench.py) and a 2-process
  dry run of tools/run_net.py.

Budget: the whole command stops within `--budget-min` minutes. Each cell's timeout is its weighted share of the
time left (a cell may use up to SHARE_STRETCH times its share when it needs to; a cell that finishes early leaves
its time to the later ones); a cell gets "not run: budget spent" when less than its minimum is left. A tool that
overruns gets SIGINT (the speed tools then write what they measured), and its process group SIGKILL after a grace
period. After every cell DIR/system_check.json and DIR/system_check.md are rewritten, so a timeout or Ctrl-C (exit
status 130) keeps every finished cell. Subprocess output goes to DIR/logs/, the tools' JSON to DIR/cells/.

Sizing: CPU cores per GPU to keep the data wait below 10 %, per model,
    cores_per_gpu = ceil(gpu_clips_per_s / (0.9 * clips_per_s_per_core)) + 1
(the decode workers, with 10 % headroom, plus the training process's own core), from the GPU training clips/s of
the synthetic-input bench (the config's precision, else fp32) and the measured clips/s per core.
"""
from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence


if TYPE_CHECKING:
    from fvcore.common.config import CfgNode

VERSION = 1
REPO_ROOT = Path(__file__).resolve().parents[2]
JSON_NAME, MARKDOWN_NAME = "system_check.json", "system_check.md"
NOT_MEASURED = "not measured"
NO_CUDA = "no CUDA device"
FEW_GPUS = "fewer than 2 CUDA devices"
BUDGET_SPENT = "budget spent"
INTERRUPTED = "interrupted (Ctrl-C)"
TAIL_LINES = 20  # output lines a failed cell keeps

# Minimum Linux driver per CUDA major version, from NVIDIA's CUDA Toolkit release notes ("CUDA Toolkit and Minimum
# Required Driver Version for CUDA Minor Version Compatibility"): CUDA 12.x needs >= 525.60.13, CUDA 13.x needs
# >= 580.65.06. torch's CUDA 13 wheels (torch 2.14.1+cu130) on an older driver only show
# torch.cuda.is_available() False.
MIN_DRIVER = {12: "525.60.13", 13: "580.65.06"}

# Budget: how far a cell may go past its share of the time left, and the grace between SIGINT and SIGKILL.
SHARE_STRETCH = 1.5  # a cell may take up to this many times its share of the time left
GRACE_MAX_S = 10.0
GRACE_SHARE = 0.1  # of the budget, at most GRACE_MAX_S

# Data sizing: share of the budget for generating the synthetic set, and what a frame costs (render + all-intra
# x264 at 456x256: 5.5 ms of one Xeon core measured, rounded up).
DATA_SHARE = 0.2
FRAME_CORE_S = 0.006
MAX_TRAIN_PER_CLASS = 48  # twice the kinetics profile's: fewer epoch boundaries in a dry run
MIN_CLIP_S = 0.5
SIZING_HEADROOM = 0.9  # data wait below 10 %: the loaders deliver at least the GPU's rate over 0.9
SIZING_FORMULA = "cores per GPU = ceil(GPU clips/s / (0.9 * clips/s per core)) + 1 (the training process's own core)"


@dataclass(frozen=True)
class Model:
    """A benchmark model: its zoo name, label, dry-run config and canonical config (relative to the repository)."""

    name: str
    label: str
    dryrun: str
    canonical: str


MODELS = (Model("x3d_m", "X3D-M", "configs/dryrun/X3D_M.yaml", "configs/X3D_M.yaml"),
          Model("mvit_b_16x4", "MViT-B 16x4", "configs/dryrun/MVIT_B_16x4.yaml", "configs/MVIT_B_16x4.yaml"))
LABELS = {m.name: m.label for m in MODELS}
CPU_DRYRUN_CONFIG = "configs/smoke/X3D.yaml"
BACKENDS = ("pyav", "torchcodec_cuda", "dali")
TRAIN_PRECISIONS = ("fp32", "bf16")
INFER_PRECISIONS = "fp32,bf16,fp16"
INFER_BATCHES = "1,8"
NCCL_SIZES_MIB = "64,256"

# Groups, in report order.
G_ENV, G_DATA, G_TESTS, G_DRY, G_TRAIN, G_INFER, G_MULTI = (
    "Environment", "Synthetic data and CPU", "CUDA tests", "Dry runs (decoding video files)",
    "Training (synthetic input)", "Inference", "Several GPUs")
GROUPS = (G_ENV, G_DATA, G_TESTS, G_DRY, G_TRAIN, G_INFER, G_MULTI)


class NotRun(Exception):
    """The cell cannot run here; the message is the reason."""


class CellFailed(Exception):
    """The cell ran and failed: `tail` holds the last lines of its output, `figures` what it measured anyway."""

    def __init__(self, message: str, tail: Sequence[str] = (), figures: dict | None = None) -> None:
        super().__init__(message)
        self.tail, self.figures = list(tail), figures or {}


class CellTimeout(CellFailed):
    """The cell's command ran past its timeout and was stopped."""


# --------------------------------------------------------------------------------------------------------------
# Commands


@dataclass
class Finished:
    """A command that ended by itself: its exit status and the last lines of its output."""

    returncode: int
    tail: list[str]


def tail_lines(path: Path, count: int = TAIL_LINES) -> list[str]:
    """The last `count` non-empty lines of a log file (progress bars' carriage returns split lines)."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return []
    return [line.rstrip() for line in text.splitlines() if line.strip()][-count:]


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # the group has no process left
        pass


def _stop(process: subprocess.Popen, grace_s: float) -> None:
    """SIGINT to the command (the speed tools and pytest then write what they measured), then SIGKILL to its whole
    process group once it has exited or after `grace_s`."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    _kill_group(process.pid)
    process.wait()


def run_command(command: Sequence[str], timeout_s: float, log_path: Path, grace_s: float) -> Finished:
    """Run `command` from the repository root in its own process group, output (stdout and stderr) to `log_path`.

    Returns when it ends by itself (any exit status). Past `timeout_s` it is stopped (`_stop`) and CellTimeout
    raised; on any other exception here (Ctrl-C) it is stopped too and the exception goes on. Leftover processes of
    its group (e.g. data-loader workers) are killed in every case."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(list(command), cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        try:
            returncode = process.wait(timeout=max(0.0, timeout_s))
        except subprocess.TimeoutExpired:
            _stop(process, grace_s)
            raise CellTimeout(f"stopped after its timeout of {timeout_s:.0f} s", tail_lines(log_path)) from None
        except BaseException:
            _stop(process, min(grace_s, 2.0))
            raise
        _kill_group(process.pid)
    return Finished(returncode, tail_lines(log_path))


# --------------------------------------------------------------------------------------------------------------
# Environment


def version_tuple(version: str) -> tuple[int, ...]:
    """"580.65.06" -> (580, 65, 6)."""
    return tuple(int(part) for part in re.findall(r"\d+", version))


def proc_driver_version(text: str) -> str | None:
    """The driver version in /proc/driver/nvidia/version's "NVRM version" line (proprietary or open module)."""
    for line in text.splitlines():
        if line.startswith("NVRM version"):
            found = re.search(r"\s(\d+\.\d+(?:\.\d+)?)\s", line + " ")
            return found.group(1) if found else None
    return None


def driver_verdict(driver: str | None, cuda_runtime: str | None, cuda_available: bool) -> tuple[bool | None, str]:
    """(ok, sentence): whether the NVIDIA driver `driver` can run torch's CUDA `cuda_runtime` build (MIN_DRIVER).
    ok is None where it cannot be told (a CPU-only build, no driver found, a CUDA major not in the table)."""
    if not cuda_runtime:
        return None, "CPU-only torch build (torch.version.cuda is None): no GPU can be used"
    major = version_tuple(cuda_runtime)[0]
    need = MIN_DRIVER.get(major)
    if driver is None:
        if cuda_available:
            return None, f"torch's CUDA {cuda_runtime} build sees a GPU; the driver version could not be read"
        return None, (f"no NVIDIA driver found (NVML, /proc/driver/nvidia/version): torch's CUDA {cuda_runtime} build "
                      f"has no GPU to use")
    if need is None:
        return None, f"driver {driver}; the minimum driver for CUDA {major}.x is not in this check's table"
    if version_tuple(driver) < version_tuple(need):
        older = ", ".join(f"CUDA {m}.x needs {v} or newer" for m, v in sorted(MIN_DRIVER.items()) if m < major)
        return False, (f"driver {driver} is too old for torch's CUDA {cuda_runtime} build: CUDA {major}.x needs driver "
                       f"{need} or newer on Linux, so torch.cuda.is_available() is False. Upgrade the driver"
                       + (f", or install a torch build for an older CUDA ({older})" if older else ""))
    verdict = f"driver {driver} is new enough for CUDA {major}.x (minimum {need})"
    if not cuda_available:
        verdict += "; yet torch sees no GPU (check CUDA_VISIBLE_DEVICES and the /dev/nvidia* device files)"
    return True, verdict


def _nvml_probe() -> dict:
    """Driver version and GPUs as NVML sees them (works where torch's CUDA build does not), or the error."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, ...
        return {"error": f"{type(exc).__name__}: {exc}"}
    try:
        def text(value) -> str:
            return value.decode() if isinstance(value, bytes) else str(value)

        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            gpus.append({"index": index, "name": text(pynvml.nvmlDeviceGetName(handle)),
                         "memory_gib": round(pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**30, 1)})
        return {"driver": text(pynvml.nvmlSystemGetDriverVersion()), "gpus": gpus}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        pynvml.nvmlShutdown()


def _read_driver(nvml: dict) -> tuple[str | None, str | None]:
    """(driver version, where it was read)."""
    if nvml.get("driver"):
        return nvml["driver"], "NVML"
    try:
        found = proc_driver_version(Path("/proc/driver/nvidia/version").read_text())
    except OSError:
        found = None
    return (found, "/proc/driver/nvidia/version") if found else (None, None)


def _dali_version() -> str | None:
    try:
        import nvidia.dali

        return str(nvidia.dali.__version__)
    except Exception:  # not installed, or broken: not importable
        return None


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def probe_environment() -> dict:
    """This machine's GPUs, driver, CUDA stack, CPU and libraries (see the module docstring)."""
    import torch

    from vmb.data.loader import usable_cores
    from vmb.record.energy import GpuEnergy
    from vmb.record.system import describe_system

    cuda = torch.cuda.is_available()
    count = torch.cuda.device_count() if cuda else 0
    system = describe_system("cuda" if cuda else "cpu", max(1, count), 1)
    nvml = _nvml_probe()
    driver, driver_source = _read_driver(nvml)
    if cuda:
        gpus = []
        for index in range(count):
            props = torch.cuda.get_device_properties(index)
            gpus.append({"index": index, "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                         "capability": f"sm_{props.major}{props.minor}",
                         "pci_bus_id": f"{props.pci_domain_id:08x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"})
    else:
        gpus = nvml.get("gpus", [])
    try:
        nccl = ".".join(map(str, torch.cuda.nccl.version()))
    except Exception as exc:  # a build without NCCL
        nccl = f"unavailable ({type(exc).__name__})"
    driver_ok, verdict = driver_verdict(driver, torch.version.cuda, cuda)
    dali = _dali_version()
    return {
        "cuda_available": cuda, "cuda_devices": count, "gpus": gpus,
        "driver_version": driver, "driver_source": driver_source, "nvml": nvml.get("error", "ok"),
        "cuda_runtime": torch.version.cuda, "min_driver": MIN_DRIVER.get(version_tuple(torch.version.cuda or "0")[0]),
        "driver_ok": driver_ok, "driver_verdict": verdict,
        "cuda_arch_list": torch.cuda.get_arch_list(), "nccl_version": nccl,
        "bf16_native": torch.cuda.is_bf16_supported(including_emulation=False) if cuda else None,
        "nvml_energy_readable": GpuEnergy(torch.device("cuda", 0)).unavailable is None if cuda else None,
        "cudnn_version": system["cudnn_version"],
        "cpu_model": system["host_processor_model_name"], "cpu_count": system["host_processor_core_count"],
        "usable_cores": usable_cores(), "memory": system["host_memory_capacity"],
        "os": system["operating_system"], "python": system["python_version"],
        "versions": {"torch": torch.__version__, "torchvision": _package_version("torchvision"),
                     "torchcodec": _package_version("torchcodec"), "dali": dali or "not importable",
                     "av": _package_version("av"), "pytorchvideo": _package_version("pytorchvideo")},
        "dali_importable": dali is not None,
    }


# --------------------------------------------------------------------------------------------------------------
# Plan: what the cells run, sized to the budget and the machine


@dataclass(frozen=True)
class Plan:
    """The work of each cell. Data: `train_per_class` training and 1 validation video per class of `clip_seconds`
    (`span_seconds` is the longest training clip span of the models: a shorter clip repeats its last frame for the
    instants past its end, so the per-core figure on it comes out optimistic). bench_train runs `*_iters`
    iterations of which the first `*_warmup` are not timed: `dry_` on real data, `train_` on synthetic input;
    bench_infer times each of its cells for `infer_seconds` after `infer_warmup` iterations."""

    train_per_class: int
    clip_seconds: float
    span_seconds: float
    data_workers: int
    per_core_s: float  # CPU seconds per model in the per-core cell
    dry_warmup: int
    dry_iters: int
    train_warmup: int
    train_iters: int
    infer_warmup: int
    infer_seconds: float


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def model_config(model: Model, which: str = "canonical") -> CfgNode:
    """The model's canonical or dry-run config (`which`: "canonical" or "dryrun")."""
    from vmb.config import load_config

    return load_config(REPO_ROOT / getattr(model, which))


def per_gpu_batch(model: Model) -> int:
    """The canonical config's TRAIN.BATCH_SIZE over its NUM_GPUS: one GPU's share of the global batch."""
    from vmb.data.loader import per_process_batch

    cfg = model_config(model)
    return per_process_batch(cfg.TRAIN.BATCH_SIZE, max(1, cfg.NUM_GPUS), "TRAIN.BATCH_SIZE")


def make_plan(budget_s: float, cores: int, cuda_devices: int) -> Plan:
    """Size the cells' work to the budget. The synthetic set gets DATA_SHARE of the budget on `cores` cores at
    FRAME_CORE_S per frame: clips as long as the models' longest span (whole seconds) where that fits, else shorter
    (at least MIN_CLIP_S); with CUDA at least enough training videos for the largest global batch of the dry-run
    configs (bench_train's sampler needs one), up to MAX_TRAIN_PER_CLASS; without CUDA one per class (the CPU cells
    need no more)."""
    from vmb.data.sampling import clip_duration
    from vmb.data.synthetic import CLASS_NAMES, PROFILES

    configs = [model_config(m, "dryrun") for m in MODELS]
    span = max(clip_duration(c.DATA.NUM_FRAMES, c.DATA.SAMPLING_RATE, c.DATA.TARGET_FPS) for c in configs)
    fps, classes = PROFILES["kinetics"].fps, len(CLASS_NAMES)
    frames = DATA_SHARE * budget_s * cores / FRAME_CORE_S
    full_s = float(math.ceil(span))
    fitting = int(frames // (classes * full_s * fps)) - 1  # training videos per class at full length (val: 1)
    if cuda_devices:
        least = math.ceil(max(c.TRAIN.BATCH_SIZE for c in configs) / classes)
        train_per_class = int(_clamp(fitting, least, MAX_TRAIN_PER_CLASS))
    else:
        train_per_class = 1
    seconds = full_s
    if fitting < train_per_class:
        seconds = _clamp(math.floor(frames / (classes * (train_per_class + 1) * fps) * 10) / 10, MIN_CLIP_S, full_s)
    dry_warmup, train_warmup = int(_clamp(round(budget_s / 96), 2, 5)), int(_clamp(round(budget_s / 48), 2, 10))
    return Plan(train_per_class=train_per_class, clip_seconds=seconds, span_seconds=round(span, 3),
                data_workers=max(1, cores), per_core_s=_clamp(budget_s / 60, 1.0, 5.0), dry_warmup=dry_warmup,
                dry_iters=dry_warmup + int(_clamp(round(budget_s / 24), 5, 50)), train_warmup=train_warmup,
                train_iters=train_warmup + int(_clamp(round(budget_s / 12), 5, 100)), infer_warmup=5,
                infer_seconds=_clamp(budget_s / 240, 0.5, 3.0))


# --------------------------------------------------------------------------------------------------------------
# Cells


@dataclass
class CellContext:
    """What a cell sees: the output folder, the plan, the environment, the finished cells (by id), how to run a
    command (`run_command`; tests replace it), and its own id, timeout and grace period (set by the Runner)."""

    out: Path
    env: dict
    records: dict[str, dict] = field(default_factory=dict)
    plan: Plan | None = None
    execute: Callable[[Sequence[str], float, Path, float], Finished] = run_command
    cell_id: str = ""
    timeout_s: float = 0.0
    grace_s: float = 0.0

    @property
    def data_dir(self) -> Path:
        """The synthetic set: DIR/data."""
        return self.out / "data"

    @property
    def log_path(self) -> Path:
        """The cell's command output: DIR/logs/<cell id>.log."""
        return self.out / "logs" / f"{self.cell_id}.log"

    @property
    def json_path(self) -> Path:
        """The cell's tool output: DIR/cells/<cell id>.json."""
        return self.out / "cells" / f"{self.cell_id}.json"


@dataclass
class CellSpec:
    """A cell to run: `fn(ctx) -> figures`, or `not_run` (the reason it cannot run here, known beforehand). `info`:
    figures known before it runs (model, backend, batch), kept whatever happens. `weight`: its share of the time
    left; `min_s`: less than this left, it is not run. `summary(figures)`: its figures in a few words."""

    id: str
    name: str
    group: str
    fn: Callable[[CellContext], dict] | None = None
    info: dict = field(default_factory=dict)
    not_run: str | None = None
    weight: float = 1.0
    min_s: float = 0.0
    summary: Callable[[dict], str] | None = None  # None: bench_summary


def _python(*args: object) -> list[str]:
    return [sys.executable, *map(str, args)]


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not written, or cut short by a kill
        return None


def run_tool(ctx: CellContext, command: list[str], result: Path, parse: Callable[[Path], dict],
             ok_codes: Sequence[int] = (0,)) -> dict:
    """Run a tool that writes the file `result`; its figures are `parse(result)` plus the command line. A timeout
    keeps what the tool wrote before it stopped; another exit status, or no readable result, is a failure."""
    result.parent.mkdir(parents=True, exist_ok=True)
    result.unlink(missing_ok=True)

    def figures() -> dict:
        try:
            parsed = parse(result) if result.is_file() else None
        except (ValueError, KeyError, TypeError, ET.ParseError):  # cut short by a kill, or not the tool's format
            parsed = None
        return {"command": shlex.join(command), **(parsed or {})}

    try:
        finished = ctx.execute(command, ctx.timeout_s, ctx.log_path, ctx.grace_s)
    except CellTimeout as exc:
        exc.figures = figures()
        raise
    if finished.returncode not in ok_codes or not result.is_file():
        written = "" if result.is_file() else f", {result.name} not written"
        raise CellFailed(f"exit status {finished.returncode}{written}", finished.tail, figures())
    return figures()


def _json_figures(parse: Callable[[dict], dict]) -> Callable[[Path], dict]:
    return lambda path: parse(json.loads(path.read_text()))


def _need_data(ctx: CellContext) -> None:
    record = ctx.records.get("data")
    if record is None or record["status"] != "ok":
        raise NotRun(f"no synthetic data (the data cell: {record['status'] if record else 'missing'})")


def cell_environment(ctx: CellContext, probe: Callable[[], dict] = probe_environment) -> dict:
    """The environment, into `ctx.env` (the document's "environment"); its figures are the headline."""
    ctx.env.update(probe())
    env = ctx.env
    gpus = env["gpus"]
    names = f"{len(gpus)} x {gpus[0]['name']} ({gpus[0]['memory_gib']} GiB)" if gpus else "no GPU"
    return {"gpus": names, "cuda_devices": env["cuda_devices"], "driver": env["driver_version"],
            "driver_ok": env["driver_ok"], "cuda_runtime": env["cuda_runtime"], "usable_cores": env["usable_cores"]}


def cell_data(ctx: CellContext) -> dict:
    """Write (or reuse) the Kinetics-shaped synthetic set in DIR/data with tools/make_synthetic.py."""
    from vmb.data.synthetic import SPEC_FILE

    plan = ctx.plan
    command = _python(REPO_ROOT / "tools" / "make_synthetic.py", "--profile", "kinetics", "--out", ctx.data_dir,
                      "--train-per-class", plan.train_per_class, "--val-per-class", 1, "--seconds",
                      plan.clip_seconds, "--seed", 0, "--workers", plan.data_workers, "--force")
    finished = ctx.execute(command, ctx.timeout_s, ctx.log_path, ctx.grace_s)
    spec = _read_json(ctx.data_dir / SPEC_FILE)
    if finished.returncode != 0 or spec is None:
        raise CellFailed(f"exit status {finished.returncode}", finished.tail, {"command": shlex.join(command)})
    seconds = spec["num_frames"] / spec["fps"]
    size = sum(p.stat().st_size for p in ctx.data_dir.rglob("*.mp4"))
    return {"command": shlex.join(command), "path": str(ctx.data_dir),
            "train_videos": spec["train_per_class"] * spec["num_classes"],
            "val_videos": spec["val_per_class"] * spec["num_classes"], "size": f"{spec['width']}x{spec['height']}",
            "clip_seconds": seconds, "span_seconds": plan.span_seconds, "short_clips": seconds < plan.span_seconds,
            "megabytes": round(size / 1e6, 1)}


def measure_per_core(data_dir: Path, cpu_seconds: float) -> dict[str, dict]:
    """Training clips per CPU second of one core, per model: VMB's training dataset (the canonical config's
    sampling and augmentation, DATA.DECODING_BACKEND pyav) on `data_dir`'s train split, one torch thread, timed by
    vmb.speed.loader_bench.time_cells (`cpu_seconds` of this process's CPU time per model, two interleaved
    rounds, after one warm-up clip)."""
    import torch

    from vmb.data.formats import PREPARED
    from vmb.data.kinetics import KineticsDataset
    from vmb.data.loader import clip_spec_from_cfg
    from vmb.speed.loader_bench import Cell, time_cells

    cells, num_clips = [], 0
    for model in MODELS:
        cfg = model_config(model)
        dataset = KineticsDataset(data_dir, "train", cfg.MODEL.NUM_CLASSES,
                                  replace(clip_spec_from_cfg(cfg), backend="pyav"), train=True, seed=cfg.RNG_SEED)
        num_clips = len(dataset)
        cells.append(Cell(model.name, cfg.MODEL.ARCH, "vmb_train", PREPARED.name,
                          lambda clip, rep, dataset=dataset: dataset[(rep, clip)]))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        time_cells(cells, num_clips, cpu_seconds, rounds=2, clock="cpu")
    finally:
        torch.set_num_threads(threads)
    def median(rates: list[float]) -> float | None:
        return statistics.median(rates) if rates else None

    return {cell.config: {"clips_per_s_per_core": None if cell.error else median(cell.rates("cpu")),
                          "clips_per_s_wall": None if cell.error else median(cell.rates("wall")),
                          "cpu_share": cell.cpu_share, "clips": cell.clips, "error": cell.error} for cell in cells}


def cell_per_core(ctx: CellContext, measure: Callable[[Path, float], dict] | None = None) -> dict:
    """Clips/s per CPU core per model on DIR/data (in this process; its time is bounded by the cell's timeout)."""
    _need_data(ctx)
    seconds = min(ctx.plan.per_core_s, max(0.5, ctx.timeout_s / (3 * len(MODELS))))
    per_core = (measure or measure_per_core)(ctx.data_dir, seconds)
    figures = {"per_core": per_core, "cpu_seconds_per_model": seconds,
               "short_clips": ctx.records["data"]["figures"].get("short_clips")}
    if not any(m["clips_per_s_per_core"] for m in per_core.values()):
        raise CellFailed("no model's clips were measured",
                         [f"{name}: {m['error']}" for name, m in per_core.items()], figures)
    return figures


def bench_figures(result: dict) -> dict:
    """tools/bench_train.py's JSON -> a cell's figures: clips/s, data wait (data_s mean / s_iter mean), peak memory,
    NVML GPU utilisation and host syncs per step (NOT_MEASURED where the JSON lacks them or holds null)."""
    s_iter, data_s = result.get("s_iter") or {}, result.get("data_s") or {}
    wait = data_s["mean"] / s_iter["mean"] if s_iter.get("mean") and "mean" in data_s else None
    figures = {"bench_status": result.get("status"), "clips_per_s": result.get("clips_per_s"),
               "data_wait_fraction": wait, "s_iter_mean": s_iter.get("mean"),
               "peak_memory_mib": result.get("peak_memory_mib"), "batch_size": result.get("batch_size"),
               "precision": result.get("precision"), "num_workers": result.get("num_workers"),
               "measured_iters": result.get("measured_iters"), "device": result.get("device")}
    for key in ("gpu_utilization_pct", "host_syncs_per_step"):
        value = result.get(key)
        figures[key] = NOT_MEASURED if value is None else value
    return figures


def _bench_train(ctx: CellContext, options: Sequence[object], overrides: Sequence[object] = ()) -> dict:
    """tools/bench_train.py OPTIONS --json <the cell's JSON> KEY VALUE..., parsed by `bench_figures`."""
    command = _python(REPO_ROOT / "tools" / "bench_train.py", *options, "--json", ctx.json_path, *overrides)
    return run_tool(ctx, command, ctx.json_path, _json_figures(bench_figures))


def _need_train_videos(ctx: CellContext, model: Model) -> None:
    """bench_train's and run_net's sampler needs at least one global batch of training videos."""
    global_batch = model_config(model, "dryrun").TRAIN.BATCH_SIZE
    videos = ctx.records["data"]["figures"]["train_videos"]
    if videos < global_batch:
        raise NotRun(f"{videos} training videos in the synthetic data, fewer than {model.label}'s global batch "
                     f"TRAIN.BATCH_SIZE {global_batch} (a larger --budget-min writes more)")


def cell_cpu_dryrun(ctx: CellContext) -> dict:
    """The dry run's CPU cell: bench_train on the smoke X3D config with DIR/data, pyav, NUM_WORKERS auto, so that
    the dry-run path (real data, loader workers, bench JSON) runs where there is no GPU."""
    _need_data(ctx)
    plan = ctx.plan
    return _bench_train(ctx, ["--cfg", REPO_ROOT / CPU_DRYRUN_CONFIG, "--iters", plan.dry_iters, "--warmup",
                              plan.dry_warmup, "--rounds", 0],
                        ["DATA.PATH_TO_DATA_DIR", ctx.data_dir, "DATA.DECODING_BACKEND", "pyav",
                         "DATA_LOADER.NUM_WORKERS", "auto", "SYNTHETIC.ENABLE", "False"])


def cell_dryrun(ctx: CellContext, model: Model, backend: str) -> dict:
    """bench_train on the model's dry-run config with DIR/data: the canonical per-GPU batch and precision, the
    decoding backend `backend` (pyav with NUM_WORKERS auto, the GPU decoders with 0)."""
    _need_data(ctx)
    _need_train_videos(ctx, model)
    plan = ctx.plan
    return _bench_train(ctx, ["--cfg", REPO_ROOT / model.dryrun, "--iters", plan.dry_iters, "--warmup",
                              plan.dry_warmup, "--rounds", 0],
                        ["DATA.PATH_TO_DATA_DIR", ctx.data_dir, "DATA.DECODING_BACKEND", backend,
                         "DATA_LOADER.NUM_WORKERS", "auto" if backend == "pyav" else 0])


def cell_train(ctx: CellContext, model: Model, precision: str) -> dict:
    """bench_train --synthetic (clips already on the GPU) on the canonical config at its per-GPU batch."""
    plan = ctx.plan
    return _bench_train(ctx, ["--cfg", REPO_ROOT / model.canonical, "--synthetic", "--precision", precision,
                              "--iters", plan.train_iters, "--warmup", plan.train_warmup, "--rounds", 0])


def infer_figures(document: dict) -> dict:
    """tools/bench_infer.py's JSON -> one row per model x batch x precision."""
    keys = ("model", "batch_size", "precision", "status", "note", "p50_ms", "p95_ms", "clips_per_s")
    return {"rows": [{key: row.get(key) for key in keys} for row in document.get("cells", [])],
            "interrupted": document.get("interrupted", False)}


def cell_infer(ctx: CellContext) -> dict:
    """bench_infer: both models at batch 1 and 8, fp32, bf16 and fp16."""
    plan = ctx.plan
    command = _python(REPO_ROOT / "tools" / "bench_infer.py", "--models", ",".join(m.name for m in MODELS),
                      "--batch-sizes", INFER_BATCHES, "--precision", INFER_PRECISIONS, "--seconds",
                      plan.infer_seconds, "--warmup", plan.infer_warmup, "--json", ctx.json_path)
    return run_tool(ctx, command, ctx.json_path, _json_figures(infer_figures))


OUTCOMES = ("passed", "failed", "skipped", "xfail", "xpass")
_WORST_FIRST = ("failed", "xpass", "xfail", "skipped", "passed")  # a test's outcome: the worst of its elements


def _first_line(text: str | None) -> str:
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[0].strip() if lines else ""


def junit_summary(xml_text: str) -> dict:
    """A pytest JUnit XML report -> per test (classname::name) its outcome and first message line, and the counts.

    Outcomes: failed (a <failure> or <error>), xpass (a strict xfail that passed: "[XPASS(strict)]"), xfail
    (<skipped type="pytest.xfail">), skipped, passed. A non-strict xfail that passes looks passed in JUnit XML."""
    tests = []
    for case in ET.fromstring(xml_text).iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            text = child.get("message") or child.text
            if child.tag in ("failure", "error"):
                xpass = (child.get("message") or "").startswith("[XPASS(strict)]")
                found = "xpass" if xpass else "failed"
            elif child.tag == "skipped":
                found = "xfail" if child.get("type") == "pytest.xfail" else \
                    "xpass" if "passes unexpectedly" in (child.get("message") or "") else "skipped"
            else:
                continue
            if _WORST_FIRST.index(found) < _WORST_FIRST.index(outcome):
                outcome, message = found, _first_line(text)
        tests.append({"test": f"{case.get('classname', '')}::{case.get('name', '')}", "outcome": outcome,
                      "message": message})
    return {"counts": {key: sum(t["outcome"] == key for t in tests) for key in OUTCOMES}, "tests": tests}


def cell_cuda_tests(ctx: CellContext) -> dict:
    """python -m pytest -m cuda with a JUnit XML report; failed if a test failed (their first lines kept)."""
    junit = ctx.out / "cells" / f"{ctx.cell_id}.xml"
    command = _python("-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}")
    figures = run_tool(ctx, command, junit, lambda path: junit_summary(path.read_text()), ok_codes=(0, 1, 5))
    failed = [f"{t['test']}: {t['message']}" for t in figures["tests"] if t["outcome"] == "failed"]
    if failed:
        raise CellFailed(f"{len(failed)} CUDA test(s) failed", failed[-TAIL_LINES:], figures)
    return figures


def nccl_figures(document: dict) -> dict:
    """vmb.speed.allreduce_bench's JSON -> the rows and the best bus bandwidth."""
    rows = document.get("rows", [])
    return {"world_size": document.get("world_size"), "backend": document.get("backend"), "rows": rows,
            "busbw_gbps": max((r["busbw_gbps"] for r in rows), default=None)}


def cell_nccl(ctx: CellContext) -> dict:
    """All-reduce bandwidth over every visible GPU (NCCL), one process each under torch.distributed.run."""
    command = _python("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", ctx.env["cuda_devices"],
                      "-m", "vmb.speed.allreduce_bench", "--sizes-mib", NCCL_SIZES_MIB, "--json", ctx.json_path)
    return run_tool(ctx, command, ctx.json_path, _json_figures(nccl_figures))


def run_figures(result: dict) -> dict:
    """A run's result.json -> status, devices, training clips/s, data wait."""
    return {key: result.get(key) for key in ("status", "n_devices", "epochs", "train_clips_per_s",
                                             "data_wait_fraction", "num_workers")}


def cell_dist_dryrun(ctx: CellContext) -> dict:
    """tools/run_net.py on the X3D-M dry-run config in 2 processes (torch.distributed.run), one epoch. The dry-run
    target is never reached, so the expected end is exit status 1 with result.json's status "aborted" on 2
    devices."""
    _need_data(ctx)
    model = MODELS[0]
    _need_train_videos(ctx, model)
    run_dir = ctx.out / "runs" / f"dryrun_{model.name}_2gpu"
    shutil.rmtree(run_dir, ignore_errors=True)  # run_net refuses a folder that holds a finished run
    command = _python("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", 2,
                      REPO_ROOT / "tools" / "run_net.py", "--cfg", REPO_ROOT / model.dryrun, "NUM_GPUS", 2,
                      "SOLVER.MAX_EPOCH", 1, "OUTPUT_DIR", run_dir, "DATA.PATH_TO_DATA_DIR", ctx.data_dir)
    figures = run_tool(ctx, command, run_dir / "result.json", _json_figures(run_figures), ok_codes=(0, 1))
    if (figures["status"], figures["n_devices"]) != ("aborted", 2):
        raise CellFailed(f"result.json: status {figures['status']} on {figures['n_devices']} device(s), expected "
                         "aborted on 2", tail_lines(ctx.log_path), figures)
    return figures


# --------------------------------------------------------------------------------------------------------------
# Summaries, sizing, the report


def _number(value: object, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _percent(fraction: object) -> str:
    return f"{100 * fraction:.1f} %" if isinstance(fraction, (int, float)) else "-"


def bench_summary(figures: dict) -> str:
    """A bench cell's figures in a few words."""
    parts = []
    if figures.get("clips_per_s") is not None:
        parts.append(f"{figures['clips_per_s']:.1f} clips/s")
    if figures.get("data_wait_fraction") is not None:
        parts.append(f"data wait {_percent(figures['data_wait_fraction'])}")
    if figures.get("peak_memory_mib") is not None:
        parts.append(f"peak {figures['peak_memory_mib']:.0f} MiB")
    for key, label in (("gpu_utilization_pct", "GPU util %"), ("host_syncs_per_step", "syncs/step")):
        if key in figures:
            parts.append(f"{label} {_number(figures[key])}")
    if figures.get("bench_status") not in (None, "ok"):
        parts.append(str(figures["bench_status"]))
    return ", ".join(parts)


# Each cell's figures in a few words (the terminal row and the Markdown "result" column).
def _env_summary(figures: dict) -> str:
    verdict = {True: "ok", False: "TOO OLD", None: "?"}[figures.get("driver_ok")]
    return (f"{figures.get('gpus')}; driver {figures.get('driver') or 'not found'} ({verdict}); CUDA runtime "
            f"{figures.get('cuda_runtime')}; {figures.get('usable_cores')} usable cores")


def _data_summary(figures: dict) -> str:
    short = f" (shorter than the {figures['span_seconds']:.2f} s clip span)" if figures.get("short_clips") else ""
    return (f"{figures.get('train_videos')} train / {figures.get('val_videos')} val videos, {figures.get('size')}, "
            f"{figures.get('clip_seconds', 0):g} s clips{short}, {figures.get('megabytes')} MB")


def _per_core_summary(figures: dict) -> str:
    return ", ".join(f"{LABELS.get(name, name)} {_number(m['clips_per_s_per_core'])}"
                     for name, m in figures.get("per_core", {}).items()) + " clips/s per core"


def _tests_summary(figures: dict) -> str:
    return ", ".join(f"{count} {key}" for key, count in figures.get("counts", {}).items())


def _infer_summary(figures: dict) -> str:
    rows = figures.get("rows", [])
    return f"{sum(r['status'] == 'ok' for r in rows)} of {len(rows)} model x batch x precision cells measured"


def _nccl_summary(figures: dict) -> str:
    return ", ".join(f"{r['size_mib']:g} MiB: busbw {r['busbw_gbps']:.1f} GB/s" for r in figures.get("rows", []))


def _run_summary(figures: dict) -> str:
    return (f"status {figures.get('status')} on {figures.get('n_devices')} device(s), "
            f"{_number(figures.get('train_clips_per_s'))} clips/s, "
            f"data wait {_percent(figures.get('data_wait_fraction'))}")


def config_precision(model: Model) -> str:
    """The precision the canonical config trains in on CUDA (bench_train's default there)."""
    cfg = model_config(model)
    return {"float16": "fp16", "bfloat16": "bf16"}[cfg.TRAIN.AMP_DTYPE] if cfg.TRAIN.MIXED_PRECISION else "fp32"


def _gpu_clips_per_s(cells: Sequence[dict], model: Model) -> tuple[float | None, str | None]:
    """(GPU training clips/s, where from): the model's synthetic-input training cell in its config's precision,
    else in fp32, if it measured any."""
    measured = {c["figures"]["precision"]: c for c in cells if c["group"] == G_TRAIN and c["status"] == "ok"
                and c["figures"].get("model") == model.name and (c["figures"].get("clips_per_s") or 0) > 0}
    own = next((c["figures"]["config_precision"] for c in measured.values()), None)
    for precision in (own, "fp32"):
        if precision in measured:
            return measured[precision]["figures"]["clips_per_s"], f"bench_train --synthetic {precision}"
    return None, None


def cores_per_gpu(gpu_clips_per_s: float, clips_per_s_per_core: float) -> int:
    """CPU cores one GPU needs to keep its data wait below 10 % (SIZING_FORMULA)."""
    return math.ceil(gpu_clips_per_s / (SIZING_HEADROOM * clips_per_s_per_core)) + 1


def sizing(cells: Sequence[dict], env: dict) -> dict:
    """Cores per GPU per model (SIZING_FORMULA) from the finished cells: the per-core cell's clips/s per core and
    the synthetic-input training cell's GPU clips/s (the config's precision, else fp32); where one is missing the
    verdict says "not computed: ..." with the reason."""
    per_core_cell = next((cell for cell in cells if cell["id"] == "per-core"), {})
    per_core = per_core_cell.get("figures", {}).get("per_core", {}) if per_core_cell.get("status") == "ok" else {}
    gpus = env.get("cuda_devices") or 0
    models, lines = {}, []
    for model in MODELS:
        core = (per_core.get(model.name) or {}).get("clips_per_s_per_core")
        gpu, source = _gpu_clips_per_s(cells, model)
        if gpu and core:
            cores = cores_per_gpu(gpu, core)
            verdict = f"{cores} cores per GPU"
        else:
            cores = None
            verdict = "not computed: no GPU clips/s" if not gpu else "not computed: no clips/s per core"
        models[model.name] = {"label": model.label, "gpu_clips_per_s": gpu, "gpu_source": source,
                              "clips_per_s_per_core": core, "cores_per_gpu": cores, "verdict": verdict}
        lines.append(f"{model.label}: {_number(core)} clips/s per core, {_number(gpu)} GPU clips/s, {verdict}")
    usable = env.get("usable_cores")
    here = round(usable / gpus, 1) if gpus and usable else None
    if here is not None:
        lines.append(f"this machine: {here:g} usable cores per GPU")
    note = None
    if per_core and per_core_cell["figures"].get("short_clips"):
        note = ("the clips/s per core come from synthetic clips shorter than the models' clip span (a small "
                "--budget-min): they repeat their last frame, so the figure is optimistic")
        lines.append(note)
    return {"formula": SIZING_FORMULA, "models": models, "usable_cores_per_gpu": here, "note": note,
            "line": "; ".join(lines)}


@dataclass
class Report:
    """The check's state, written as DIR/system_check.json and DIR/system_check.md (`write`, after every cell)."""

    out: Path
    budget_min: float
    started: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    began: float = field(default_factory=time.monotonic)
    environment: dict = field(default_factory=dict)
    plan: dict | None = None
    cells: list[dict] = field(default_factory=list)
    complete: bool = False
    interrupted: bool = False

    def document(self) -> dict:
        """The JSON document: {"version": 1, "started", "budget_min", "environment", "cells", "sizing", ...}."""
        return {"version": VERSION, "started": self.started, "budget_min": self.budget_min,
                "elapsed_s": round(time.monotonic() - self.began, 1), "complete": self.complete,
                "interrupted": self.interrupted, "plan": self.plan, "environment": self.environment,
                "cells": self.cells, "sizing": sizing(self.cells, self.environment)}

    def write(self) -> None:
        """Rewrite both files (each replaced atomically: a reader never sees half a file)."""
        document = self.document()
        for name, text in ((JSON_NAME, json.dumps(document, indent=1) + "\n"), (MARKDOWN_NAME, markdown(document))):
            tmp = self.out / f".{name}.tmp"
            tmp.write_text(text)
            os.replace(tmp, self.out / name)


def _cell_table(cells: list[dict], columns: Sequence[tuple[str, Callable[[dict], str]]]) -> tuple:
    """A table block: one row per cell (name, status, seconds, then `columns`: title and getter on the record)."""
    header = ["cell", "status", "s", *(title for title, _ in columns)]
    rows = [[c["name"], c["status"], f"{c['seconds']:.1f}", *(get(c) for _, get in columns)] for c in cells]
    return ("table", header, rows)


def _figure(name: str, form: Callable[[object], str] = _number) -> Callable[[dict], str]:
    return lambda cell: form(cell["figures"].get(name))


BENCH_COLUMNS = (("batch", _figure("batch_size")), ("precision", _figure("precision")),
                 ("clips/s", _figure("clips_per_s")), ("data wait", _figure("data_wait_fraction", _percent)),
                 ("peak MiB", _figure("peak_memory_mib", lambda v: _number(v, 0))),
                 ("GPU util %", _figure("gpu_utilization_pct")), ("host syncs/step", _figure("host_syncs_per_step")))
DRY_COLUMNS = (("backend", _figure("backend")),
               ("workers", lambda cell: _number(cell["figures"].get("num_workers", cell["figures"].get("workers")))),
               *BENCH_COLUMNS)
SUMMARY_COLUMN = (("result", lambda cell: cell.get("summary", "")),)


def _group_blocks(group: str, cells: list[dict]) -> list[tuple]:
    """A group's heading, its table of cells, and the detail tables of its cells' figures."""
    columns = {G_DRY: DRY_COLUMNS, G_TRAIN: BENCH_COLUMNS}.get(group, SUMMARY_COLUMN)
    blocks: list[tuple] = [("h", group), _cell_table(cells, columns)]
    for cell in cells:
        figures = cell["figures"]
        listed = [t for t in figures.get("tests", []) if t["outcome"] != "passed"]
        if listed:
            blocks.append(("table", ["test", "outcome", "first line"],
                           [[t["test"], t["outcome"], t["message"]] for t in listed]))
        if group == G_INFER and figures.get("rows"):
            blocks.append(("table", ["model", "batch", "precision", "status", "p50 ms", "p95 ms", "clips/s"],
                           [[r["model"], _number(r["batch_size"]), r["precision"],
                             r["status"] + (f" ({r['note']})" if r.get("note") else ""), _number(r.get("p50_ms"), 2),
                             _number(r.get("p95_ms"), 2), _number(r.get("clips_per_s"))] for r in figures["rows"]]))
        if group == G_MULTI and figures.get("rows"):
            blocks.append(("table", ["all-reduce MiB", "time ms", "algbw GB/s", "busbw GB/s"],
                           [[_number(r["size_mib"], 0), _number(r["time_ms"], 3), _number(r["algbw_gbps"], 2),
                             _number(r["busbw_gbps"], 2)] for r in figures["rows"]]))
        if figures.get("per_core"):
            blocks.append(("table", ["model", "clips/s per core (CPU time)", "clips/s (wall)", "clips", "error"],
                           [[LABELS.get(name, name), _number(m["clips_per_s_per_core"]),
                             _number(m["clips_per_s_wall"]), _number(m["clips"]), m["error"] or ""]
                            for name, m in figures["per_core"].items()]))
    return blocks


def _environment_rows(env: dict) -> list[list[str]]:
    gpus = "; ".join(f"{g['index']}: {g['name']}, {g['memory_gib']} GiB" + (f", {g['capability']}" if "capability" in g
                                                                            else "") for g in env.get("gpus", []))
    versions = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items())
    rows = [("GPUs", gpus or "none"), ("CUDA devices (torch)", env.get("cuda_devices")),
            ("driver", f"{env.get('driver_version') or 'not found'} ({env.get('driver_source') or '-'})"),
            ("CUDA runtime (torch.version.cuda)", env.get("cuda_runtime")),
            ("minimum driver for it", env.get("min_driver")),
            ("torch CUDA arch list", " ".join(env.get("cuda_arch_list") or []) or "-"),
            ("NCCL", env.get("nccl_version")), ("cuDNN", env.get("cudnn_version")),
            ("native bf16", env.get("bf16_native")), ("NVML energy counter readable", env.get("nvml_energy_readable")),
            ("CPU", f"{env.get('cpu_model')}: {env.get('cpu_count')} cores, {env.get('usable_cores')} usable"),
            ("memory", env.get("memory")), ("OS", env.get("os")), ("Python", env.get("python")),
            ("libraries", versions)]
    return [[name, _number(value)] for name, value in rows]


def markdown(document: dict) -> str:
    """The report: environment, one table per cell group, the sizing, the cells not run and the failures."""
    from vmb.reporting import format_markdown

    env, cells = document["environment"], document["cells"]
    state = "complete" if document["complete"] else "interrupted (Ctrl-C)" if document["interrupted"] else \
        "in progress"
    blocks: list[tuple] = [
        ("h", "VMB system check"),
        ("p", (f"Started {document['started']}, budget {document['budget_min']:g} min, "
               f"{document['elapsed_s']:.0f} s so far, {state}.")),
    ]
    if env:
        blocks += [("h", G_ENV), ("p", f"Driver: {env.get('driver_verdict')}."),
                   ("table", ["item", "value"], _environment_rows(env))]
    for group in GROUPS[1:]:
        members = [c for c in cells if c["group"] == group]
        if members:
            blocks += _group_blocks(group, members)
    size = document["sizing"]
    blocks += [("h", "Sizing: CPU cores per GPU for a data wait below 10 %"), ("p", size["formula"] + "."),
               ("table", ["model", "GPU clips/s", "from", "clips/s per core", "cores per GPU"],
                [[m["label"], _number(m["gpu_clips_per_s"]), m["gpu_source"] or "-",
                  _number(m["clips_per_s_per_core"]), m["verdict"]] for m in size["models"].values()]),
               ("p", size["line"])]
    not_run = [f"{c['name']}: {c['status'][len('not run: '):]}" for c in cells if c["status"].startswith("not run")]
    if not_run:
        blocks += [("h", "Cells not run"), ("list", not_run)]
    failures = [c for c in cells if c["status"] in ("failed", "timeout")]
    if failures:
        blocks.append(("h", "Failures and timeouts (the last lines of their output; the whole of it in logs/)"))
        for cell in failures:
            blocks += [("p", f"{cell['name']} ({cell['status']}): {cell['figures'].get('command', '')}"),
                       ("list", cell["error"] or ["(no output)"])]
    return format_markdown(blocks)


# --------------------------------------------------------------------------------------------------------------
# Running the cells


class Runner:
    """Runs cells one after the other within the budget (module docstring), records each (`Report.cells`, rewritten
    to disk after each), prints a row per cell with `log`, and keeps going after any failure. Ctrl-C (a
    KeyboardInterrupt) inside a cell or between cells sets `interrupted`: the cell and every later one that could
    have run are recorded "not run: interrupted (Ctrl-C)"."""

    def __init__(self, report: Report, ctx: CellContext, deadline: float, grace_s: float,
                 log: Callable[[str], None] = print) -> None:
        self.report, self.ctx, self.deadline, self.grace_s, self.log = report, ctx, deadline, grace_s, log
        self.interrupted = False

    def run(self, specs: Sequence[CellSpec]) -> None:
        """Run or record every cell of `specs`, in order."""
        for index, spec in enumerate(specs):
            try:
                if spec.not_run:
                    self._record(spec, f"not run: {spec.not_run}", 0.0)
                elif self.interrupted:
                    self._record(spec, f"not run: {INTERRUPTED}", 0.0)
                else:
                    self._budgeted(spec, specs[index:])
            except KeyboardInterrupt:
                self.interrupted = True
                if not any(c["id"] == spec.id for c in self.report.cells):
                    self._record(spec, f"not run: {INTERRUPTED}", 0.0)

    def timeout(self, spec: CellSpec, remaining: Sequence[CellSpec]) -> float | None:
        """The cell's timeout: its weighted share of the time left (keeping the grace period in hand), stretched
        by SHARE_STRETCH, at least its min_s; None when less than min_s is left."""
        left = self.deadline - time.monotonic() - self.grace_s
        if left < spec.min_s:
            return None
        weights = sum(s.weight for s in remaining if s.not_run is None)
        share = left * spec.weight / weights if weights else left
        return min(left, max(spec.min_s, SHARE_STRETCH * share))

    def _budgeted(self, spec: CellSpec, remaining: Sequence[CellSpec]) -> None:
        timeout = self.timeout(spec, remaining)
        if timeout is None:
            self._record(spec, f"not run: {BUDGET_SPENT}", 0.0)
            return
        self.ctx.cell_id, self.ctx.timeout_s, self.ctx.grace_s = spec.id, timeout, self.grace_s
        self.log(f"  ... {spec.name} (up to {timeout:.0f} s)")
        began = time.monotonic()
        figures, error = {}, None
        try:
            figures, status = spec.fn(self.ctx) or {}, "ok"
        except KeyboardInterrupt:
            self.interrupted, status = True, f"not run: {INTERRUPTED}"
        except NotRun as exc:
            status = f"not run: {exc}"
        except CellFailed as exc:
            status = "timeout" if isinstance(exc, CellTimeout) else "failed"
            figures, error = exc.figures, [str(exc), *exc.tail]
        except Exception as exc:  # a bug or an unexpected environment: this cell fails, the others go on
            lines = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).splitlines()
            status, error = "failed", [f"{type(exc).__name__}: {exc}", *lines[-TAIL_LINES:]]
        self._record(spec, status, time.monotonic() - began, figures, error)

    def _record(self, spec: CellSpec, status: str, seconds: float, figures: dict | None = None,
                error: list[str] | None = None) -> None:
        figures = {**spec.info, **(figures or {})}
        measured = status == "ok" or figures.keys() - spec.info.keys()
        try:
            summary = (spec.summary or bench_summary)(figures) if measured else ""
        except (KeyError, TypeError, ValueError):  # figures a failed tool left incomplete
            summary = ""
        record = {"id": spec.id, "name": spec.name, "group": spec.group, "status": status,
                  "seconds": round(seconds, 1), "summary": summary, "figures": figures, "error": error}
        self.report.cells.append(record)
        self.ctx.records[spec.id] = record
        self.report.write()
        self.log(row(record))


def row(record: dict) -> str:
    """A cell's line in the terminal table (header: ROW_HEADER)."""
    return f"{record['name'][:38]:<38} {record['status'][:34]:<34} {record['seconds']:>6.1f}  {record['summary']}"


ROW_HEADER = f"{'cell':<38} {'status':<34} {'s':>6}  figures"


def plan_cells(env: dict, plan: Plan) -> list[CellSpec]:
    """Every cell after the environment, in order; those that cannot run on this machine carry their reason."""
    gpus = env.get("cuda_devices") or 0
    no_gpu = None if gpus else NO_CUDA
    specs = [
        CellSpec("data", "synthetic data (Kinetics-shaped)", G_DATA, cell_data, weight=3, min_s=5,
                 summary=_data_summary),
        CellSpec("per-core", "clips/s per CPU core (pyav, CPU cell)", G_DATA, cell_per_core, weight=1, min_s=3,
                 summary=_per_core_summary),
        CellSpec("cuda-tests", "CUDA tests (pytest -m cuda)", G_TESTS, cell_cuda_tests, not_run=no_gpu, weight=6,
                 min_s=30, summary=_tests_summary),
    ]
    if not gpus:
        specs.append(CellSpec("dryrun-cpu-smoke_x3d", "dry run smoke X3D pyav (CPU cell)", G_DRY, cell_cpu_dryrun,
                              info={"model": "smoke_x3d", "backend": "pyav", "workers": "auto"}, weight=3,
                              min_s=10))
    for model in MODELS:
        batch = per_gpu_batch(model)
        for backend in BACKENDS:
            reason = no_gpu or (None if backend != "dali" or env.get("dali_importable") else
                                'nvidia.dali not importable (pip install -e ".[dali]")')
            specs.append(CellSpec(f"dryrun-{model.name}-{backend}", f"dry run {model.label} {backend}", G_DRY,
                                  partial(cell_dryrun, model=model, backend=backend), not_run=reason, weight=2,
                                  min_s=30, info={"model": model.name, "backend": backend, "batch_size": batch,
                                                  "workers": "auto" if backend == "pyav" else 0}))
    for model in MODELS:
        batch, own = per_gpu_batch(model), config_precision(model)
        for precision in TRAIN_PRECISIONS:
            reason = no_gpu or (None if precision != "bf16" or env.get("bf16_native") else "no native bf16 on this GPU")
            specs.append(CellSpec(f"train-{model.name}-{precision}", f"train {model.label} {precision} (synthetic)",
                                  G_TRAIN, partial(cell_train, model=model, precision=precision), not_run=reason,
                                  weight=1, min_s=20, info={"model": model.name, "batch_size": batch,
                                                            "precision": precision, "config_precision": own}))
    specs.append(CellSpec("inference", "inference (bench_infer, batch 1 and 8)", G_INFER, cell_infer, not_run=no_gpu,
                          weight=2, min_s=30, summary=_infer_summary))
    few = no_gpu or (None if gpus >= 2 else FEW_GPUS)
    specs += [CellSpec("nccl-allreduce", f"NCCL all-reduce over {max(gpus, 2)} GPUs", G_MULTI, cell_nccl,
                       not_run=few, weight=1, min_s=20, summary=_nccl_summary),
              CellSpec("dryrun-2gpu", "2-process dry run X3D-M (run_net)", G_MULTI, cell_dist_dryrun, not_run=few,
                       weight=2, min_s=40, summary=_run_summary)]
    return specs


def run_check(out: Path, budget_min: float, log: Callable[[str], None] = print,
              execute: Callable[[Sequence[str], float, Path, float], Finished] = run_command,
              probe: Callable[[], dict] = probe_environment) -> int:
    """Run every cell into `out` within `budget_min` minutes. Exit status: 0 when every cell that ran is ok, 1 when
    one failed or timed out, 130 on Ctrl-C (the outputs are written in every case)."""
    budget_s = budget_min * 60
    report = Report(out, budget_min)
    ctx = CellContext(out=out, env=report.environment, execute=execute)
    runner = Runner(report, ctx, report.began + budget_s, min(GRACE_MAX_S, GRACE_SHARE * budget_s), log)
    log(f"VMB system check into {out}, budget {budget_min:g} min")
    log(ROW_HEADER)
    runner.run([CellSpec("environment", "environment", G_ENV, partial(cell_environment, probe=probe), weight=0,
                         summary=_env_summary)])
    try:
        if not runner.interrupted:
            ctx.plan = make_plan(budget_s, report.environment.get("usable_cores") or 1,
                                 report.environment.get("cuda_devices") or 0)
            report.plan = asdict(ctx.plan)
            runner.run(plan_cells(report.environment, ctx.plan))
    except KeyboardInterrupt:
        runner.interrupted = True
    report.interrupted, report.complete = runner.interrupted, not runner.interrupted
    report.write()
    document = report.document()
    log(f"sizing: {document['sizing']['line']}")
    log(f"written: {out / JSON_NAME}, {out / MARKDOWN_NAME} ({document['elapsed_s']:.0f} s)")
    if runner.interrupted:
        return 130
    return 1 if any(c["status"] in ("failed", "timeout") for c in report.cells) else 0
