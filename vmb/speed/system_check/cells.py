"""The cells after the environment probe, and the list of them for a machine (`plan_cells`).

A cell is `fn(ctx) -> figures` (a CellSpec): it reads what it needs from its CellContext (the output folder, the
plan, the environment, the finished cells) and runs its tool with `ctx.execute` within `ctx.timeout_s`; it returns
its figures or raises (vmb.speed.system_check.process). The tools' JSON goes to DIR/cells/, their output to
DIR/logs/.
"""
from __future__ import annotations

import json
import shlex
import shutil
import statistics
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

from vmb.speed.system_check.environment import probe_environment
from vmb.speed.system_check.figures import bench_figures, infer_figures, junit_summary, nccl_figures, run_figures
from vmb.speed.system_check.plan import (BACKENDS, CPU_DRYRUN_CONFIG, G_DATA, G_DRY, G_INFER, G_MULTI, G_TESTS,
                                         G_TRAIN, INFER_BATCHES, INFER_PRECISIONS, MODELS, NCCL_SIZES_MIB,
                                         TRAIN_PRECISIONS, Model, Plan, config_precision, model_config, per_gpu_batch)
from vmb.speed.system_check.process import (REPO_ROOT, TAIL_LINES, CellFailed, CellTimeout, Finished, NotRun,
                                            run_command, tail_lines)
from vmb.speed.system_check.summaries import (data_summary, infer_summary, nccl_summary, per_core_summary,
                                              run_summary, tests_summary)

NO_CUDA = "no CUDA device"
FEW_GPUS = "fewer than 2 CUDA devices"


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
    from vmb.data.prepare.synthetic import SPEC_FILE

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
    vmb.speed.loader.cells.time_cells (`cpu_seconds` of this process's CPU time per model, two interleaved
    rounds, after one warm-up clip)."""
    import torch

    from vmb.data.prepare.formats import PREPARED
    from vmb.data.kinetics import KineticsDataset
    from vmb.data.loader import clip_spec_from_cfg
    from vmb.speed.loader.cells import Cell, time_cells

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


def cell_infer(ctx: CellContext) -> dict:
    """bench_infer: both models at batch 1 and 8, fp32, bf16 and fp16."""
    plan = ctx.plan
    command = _python(REPO_ROOT / "tools" / "bench_infer.py", "--models", ",".join(m.name for m in MODELS),
                      "--batch-sizes", INFER_BATCHES, "--precision", INFER_PRECISIONS, "--seconds",
                      plan.infer_seconds, "--warmup", plan.infer_warmup, "--json", ctx.json_path)
    return run_tool(ctx, command, ctx.json_path, _json_figures(infer_figures))


def cell_cuda_tests(ctx: CellContext) -> dict:
    """python -m pytest -m cuda with a JUnit XML report; failed if a test failed (their first lines kept)."""
    junit = ctx.out / "cells" / f"{ctx.cell_id}.xml"
    command = _python("-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}")
    figures = run_tool(ctx, command, junit, lambda path: junit_summary(path.read_text()), ok_codes=(0, 1, 5))
    failed = [f"{t['test']}: {t['message']}" for t in figures["tests"] if t["outcome"] == "failed"]
    if failed:
        raise CellFailed(f"{len(failed)} CUDA test(s) failed", failed[-TAIL_LINES:], figures)
    return figures


def cell_nccl(ctx: CellContext) -> dict:
    """All-reduce bandwidth over every visible GPU (NCCL), one process each under torch.distributed.run."""
    command = _python("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", ctx.env["cuda_devices"],
                      "-m", "vmb.speed.allreduce_bench", "--sizes-mib", NCCL_SIZES_MIB, "--json", ctx.json_path)
    return run_tool(ctx, command, ctx.json_path, _json_figures(nccl_figures))


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


def plan_cells(env: dict, plan: Plan) -> list[CellSpec]:
    """Every cell after the environment, in order; those that cannot run on this machine carry their reason."""
    gpus = env.get("cuda_devices") or 0
    no_gpu = None if gpus else NO_CUDA
    specs = [
        CellSpec("data", "synthetic data (Kinetics-shaped)", G_DATA, cell_data, weight=3, min_s=5,
                 summary=data_summary),
        CellSpec("per-core", "clips/s per CPU core (pyav, CPU cell)", G_DATA, cell_per_core, weight=1, min_s=3,
                 summary=per_core_summary),
        CellSpec("cuda-tests", "CUDA tests (pytest -m cuda)", G_TESTS, cell_cuda_tests, not_run=no_gpu, weight=6,
                 min_s=30, summary=tests_summary),
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
                          weight=2, min_s=30, summary=infer_summary))
    few = no_gpu or (None if gpus >= 2 else FEW_GPUS)
    specs += [CellSpec("nccl-allreduce", f"NCCL all-reduce over {max(gpus, 2)} GPUs", G_MULTI, cell_nccl,
                       not_run=few, weight=1, min_s=20, summary=nccl_summary),
              CellSpec("dryrun-2gpu", "2-process dry run X3D-M (run_net)", G_MULTI, cell_dist_dryrun, not_run=few,
                       weight=2, min_s=40, summary=run_summary)]
    return specs
