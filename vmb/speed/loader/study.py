"""The format and loader study (`tools/bench_loader.py`): training clips per second per core, side by side.

One process, one torch thread, one decoder thread: every cell (config x pipeline x format) turns the same clips
into training clips, and the cells take turns (`vmb.speed.loader.cells.time_cells`) so that machine noise hits all
of them alike; a cell's rate is the median of its rounds. The pipelines are in `vmb.speed.loader.pipelines`, the
clips and their encodings in `vmb.speed.loader.clips`. Ratios and the issue's goal checks are pure functions of the
measured rows (`compute_ratios`, `goal_checks`). `run_study` returns the JSON document: {"header", "formats",
"rows", "goals"}.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time
from importlib import metadata
from typing import Callable

from vmb.data.prepare.formats import SOURCE_LIKE, VideoFormat
from vmb.speed.loader.cells import Cell, build_cells, time_cells
from vmb.speed.loader.clips import ClipSource, EncodedSet, prepare_clips, study_formats
from vmb.speed.loader.pipelines import PIPELINES, SHARED_SPANS
from vmb.speed.loader.report import format_goals, format_header, format_table

BOUND, REFERENCE = "pyav_bound", "pytorchvideo"
RATIO_PIPELINES = ("vmb_train", "vmb_train_torchcodec", "pyav_bound", "pyav_naive", "torchcodec", "pytorchvideo")
# The goals: (1) X3D-M's pipeline on the prepared format vs the PyAV bound on source-like clips,
# (2) MViT's vs the bound of its own format, (3) both vs PyTorchVideo on the prepared format.
GOAL_X3D_VS_SOURCE_BOUND = 2.5
GOAL_MVIT_VS_OWN_BOUND = 0.8
GOAL_VS_PYTORCHVIDEO = 3.0


CLOCK_TEXT = {"cpu": "this process's CPU time (all its threads; robust to other processes on the machine)",
              "wall": "wall-clock time"}


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return numerator / denominator


def compute_ratios(rows: list[dict], source_format: str = SOURCE_LIKE.name) -> list[dict]:
    """Rows with three ratios added (None where a rate is missing), all within the row's config:
    `x_bound_source` = rate / PyAV bound on source-like clips, `x_bound_same_format` = rate / PyAV bound on the
    row's format, `x_pytorchvideo_same_format` = rate / PyTorchVideo on the row's format. The device-side
    augment row gets none (it is not a loader)."""
    rate = {(r["config"], r["pipeline"], r["format"]): r.get("clips_per_s") for r in rows}
    out = []
    for row in rows:
        config, fmt, value = row["config"], row["format"], row.get("clips_per_s")
        ratios = dict(x_bound_source=None, x_bound_same_format=None, x_pytorchvideo_same_format=None)
        if row["pipeline"] in RATIO_PIPELINES:
            ratios = dict(x_bound_source=_ratio(value, rate.get((config, BOUND, source_format))),
                          x_bound_same_format=_ratio(value, rate.get((config, BOUND, fmt))),
                          x_pytorchvideo_same_format=_ratio(value, rate.get((config, REFERENCE, fmt))))
        out.append({**row, **ratios})
    return out


def goal_checks(rows: list[dict], prepared_format: str) -> list[dict]:
    """The issue's three checks on rows from `compute_ratios`: status PASS / FAIL, or n/a where a needed row
    was not measured (e.g. one config only)."""

    def find(arch: str) -> dict | None:
        return next((r for r in rows if r["arch"] == arch and r["pipeline"] == "vmb_train"
                     and r["format"] == prepared_format), None)

    x3d, mvit = find("x3d"), find("mvit")

    def value(row: dict | None, key: str) -> float | None:
        return None if row is None else row.get(key)

    def check(text: str, values: dict[str, float | None], threshold: float) -> dict:
        known = [v for v in values.values() if v is not None]
        status = "n/a" if len(known) < len(values) else ("PASS" if min(known) >= threshold else "FAIL")
        return {"goal": text, "threshold": threshold, "values": values, "status": status}

    return [
        check(f"(1) VMB X3D-M train pipeline on {prepared_format} >= {GOAL_X3D_VS_SOURCE_BOUND}x the bare PyAV "
              f"bound on source-like clips", {"x3d": value(x3d, "x_bound_source")}, GOAL_X3D_VS_SOURCE_BOUND),
        check(f"(2) VMB MViT train pipeline on {prepared_format} >= {GOAL_MVIT_VS_OWN_BOUND}x the bare PyAV bound "
              f"of the same format", {"mvit": value(mvit, "x_bound_same_format")}, GOAL_MVIT_VS_OWN_BOUND),
        check(f"(3) both VMB train pipelines on {prepared_format} >= {GOAL_VS_PYTORCHVIDEO}x PyTorchVideo on the "
              f"same format", {"x3d": value(x3d, "x_pytorchvideo_same_format"),
                               "mvit": value(mvit, "x_pytorchvideo_same_format")}, GOAL_VS_PYTORCHVIDEO),
    ]


def _row(cell: Cell, configs: dict[str, str], sets: dict, clock: str) -> dict:
    def median(values: list[float]) -> float | None:
        return statistics.median(values) if values and not cell.error else None

    return {"config": cell.config, "arch": cell.arch, "sampling": configs[cell.config], "pipeline": cell.pipeline,
            "label": PIPELINES[cell.pipeline], "format": cell.format, "clock": clock,
            "clips_per_s": median(cell.rates(clock)), "round_rates": cell.rates(clock),
            "clips_per_s_cpu": median(cell.rates("cpu")), "clips_per_s_wall": median(cell.rates("wall")),
            "cpu_share": cell.cpu_share, "clips": cell.clips, "error": cell.error,
            "bytes_per_clip": sets[cell.format].bytes_per_clip if cell.pipeline != "augment_device" else None}


def _prepare(args: argparse.Namespace, formats: list[VideoFormat], work_dir: pathlib.Path,
             log: Callable[[str], None]) -> tuple[ClipSource, dict[str, EncodedSet], list[float]]:
    source = ClipSource(num_clips=args.clips, width=args.width, height=args.height, seconds=args.clip_seconds,
                        fps=args.fps, seed=args.seed, videos=args.videos)
    sets, durations = prepare_clips(source, formats, work_dir, log)
    return source, sets, durations


def _versions() -> dict[str, str]:
    found = {}
    for package in ("torch", "av", "torchcodec", "pytorchvideo", "numpy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "missing"
    return found


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_study(args: argparse.Namespace, out: Callable[[str], None] = print, record: Callable | None = None,
              progress: Callable[[str], None] | None = _to_stderr) -> dict:
    """Run the study the checked command line `args` describes (vmb.speed.loader.options); print the tables with
    `out`, progress with `progress`, and return the JSON document. `record(config, pipeline, format, clip, rep,
    times)` is called with the span of every shared-span call (for tests)."""
    torch_threads = _one_thread()
    formats, prepared_name = study_formats(args.formats)
    work_dir = pathlib.Path(args.work_dir) if args.work_dir else pathlib.Path(tempfile.mkdtemp(prefix="vmb_bench_"))
    try:
        source, sets, durations = _prepare(args, formats, work_dir, progress or (lambda _message: None))
        cells, configs = build_cells(args, sets, durations, record)
        load_start = os.getloadavg()
        started = time.perf_counter()
        if progress:
            progress(f"timing {len(cells)} cells: {args.rounds} rounds of {args.seconds / args.rounds:g} s each")
        time_cells(cells, source.num_clips, args.seconds, args.rounds, args.clock, progress)
        study_s = time.perf_counter() - started
    finally:
        if not args.work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    rows = [_row(c, configs, sets, args.clock) for c in cells]
    rows = compute_ratios(rows)
    goals = goal_checks(rows, prepared_name)
    header = {
        "what": "training clips/s per core: one process, torch.set_num_threads(1), decoder thread_count 1",
        "clips": source.describe(), "synthetic": source.videos is None,
        "timing": f"each cell {args.seconds:g} s of {CLOCK_TEXT[args.clock]} after one warm-up clip, in "
                  f"{args.rounds} interleaved round{'s' if args.rounds != 1 else ''} (round-robin, each round "
                  f"starting one cell later); clips/s = clips per {args.clock} second, median of the rounds",
        "spans": f"{', '.join(SHARED_SPANS)}: identical spans (start drawn per (clip, repetition) from seed "
                 f"{args.seed}; PyTorchVideo's crop from its own generator per (clip, repetition)); vmb_train: "
                 f"VMB's dataset draws its own span and crop from its per-sample seeding (seed {args.seed}, "
                 f"epoch = repetition, index = clip)",
        "augment": "augment on device = vmb.data.augment.apply_clip_augment on one CPU thread per clip (decoded "
                   "clips prepared beforehand; parameters from the dataset's samples)"
                   if any(c.pipeline == "augment_device" for c in cells) else None,
        "pytorchvideo": "EncodedVideo.from_path(decoder='pyav').get_clip(span) + uniform temporal subsample + "
                        "short-side scale to a random size in the jitter range and random crop (random resized "
                        "crop for an RRC config) + flip, in torch ops; no RandAugment, erasing or normalisation",
        "prepared_format": prepared_name, "torch_threads": torch_threads,
        "load_average_start": load_start, "load_average_end": os.getloadavg(), "study_seconds": round(study_s, 1),
        "cpu_count": os.cpu_count(), "versions": _versions(),
    }
    document = {"header": header,
                "formats": [{**f.as_dict(), "bytes_per_clip": sets[f.name].bytes_per_clip} for f in formats],
                "rows": rows, "goals": goals}
    out(format_header(document))
    out(format_table(rows))
    out("goal checks (issue):")
    out(format_goals(goals))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(document, indent=1))
        out(f"JSON written to {args.json}")
    return document


def _one_thread() -> int:
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work already ran in this process
        pass
    return torch.get_num_threads()
