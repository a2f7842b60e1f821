"""The loader study's cells: a cell is one (config, pipeline, format) that makes training clips; `build_cells` makes
them in table order and `time_cells` times them side by side.

Timing: one untimed warm-up clip per cell, then rounds in which each cell in turn makes clips for its slice of the
time (round-robin, each round starting one cell further on) so that machine noise hits all cells alike. Every cell
makes the same sequence of (clip, repetition) keys (`key_of`).
"""
from __future__ import annotations

import argparse
import pathlib
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from vmb.data.kinetics import ClipSpec, KineticsDataset
from vmb.speed.loader.clips import EncodedSet, study_formats
from vmb.data.augment import apply_clip_augment
from vmb.speed.loader.pipelines import PIPELINES, ClipFn, Spans, make_fns

WARMUP_REP = 1_000_000  # the warm-up clip's repetition: outside the timed sequence of spans
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


@dataclass
class Cell:
    """One timed cell: `fn(clip, rep)` makes one training clip. Per round: clips made, wall and CPU seconds."""

    config: str
    arch: str
    pipeline: str
    format: str
    fn: ClipFn
    rounds: list[tuple[int, float, float]] = field(default_factory=list)
    clips: int = 0
    error: str | None = None

    def rates(self, clock: str) -> list[float]:
        """Clips per second of `clock` ("cpu": this process's CPU time, "wall": elapsed time), per round."""
        return [made / (cpu if clock == "cpu" else wall) for made, wall, cpu in self.rounds]

    @property
    def cpu_share(self) -> float | None:
        """CPU seconds / wall seconds over all rounds: below 1 when other processes took the core."""
        wall = sum(r[1] for r in self.rounds)
        return sum(r[2] for r in self.rounds) / wall if wall else None


def key_of(counter: int, num_clips: int) -> tuple[int, int]:
    """The counter-th (clip, repetition) of every cell: clips in order, then again at the next repetition."""
    return counter % num_clips, counter // num_clips


def _error_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:160]


def time_cells(cells: list[Cell], num_clips: int, seconds: float, rounds: int, clock: str = "cpu",
               progress: Callable[[str], None] | None = None) -> None:
    """Fill each cell's `rounds`: one untimed warm-up clip, then `rounds` rounds in which each cell in turn
    makes clips until it has used seconds / rounds of `clock` (whole clips; wall and CPU time are both kept).
    A cell that raises keeps its error and is left out from then on."""
    for cell in cells:
        try:
            cell.fn(0, WARMUP_REP)
        except Exception as exc:  # a pipeline that cannot read a format is a result, not a crash
            cell.error = _error_line(exc)
    slice_s, budget = seconds / rounds, CLOCKS[clock]
    for round_index in range(rounds):
        shift = round_index % max(1, len(cells))
        for cell in cells[shift:] + cells[:shift]:
            if cell.error:
                continue
            made, wall0, cpu0, start = 0, time.perf_counter(), time.process_time(), budget()
            try:
                while True:
                    cell.fn(*key_of(cell.clips, num_clips))
                    cell.clips += 1
                    made += 1
                    if budget() - start >= slice_s:
                        break
            except Exception as exc:
                cell.error = _error_line(exc)
                continue
            cell.rounds.append((made, time.perf_counter() - wall0, time.process_time() - cpu0))
        if progress:
            progress(f"round {round_index + 1}/{rounds} done")


def _describe(spec: ClipSpec) -> str:
    crop = "random resized crop" if spec.rrc_scale else f"scale jitter {list(spec.train_jitter_scales)} + crop"
    extra = []
    if spec.rand_augment is not None:
        extra.append("RandAugment")
    if spec.erase_prob > 0:
        extra.append("random erasing")
    return (f"{spec.num_frames}x{spec.sampling_rate} at {spec.target_fps:g} fps, {crop} {spec.train_crop_size}, "
            f"flip" + "".join(f", {e}" for e in extra))


def build_cells(args: argparse.Namespace, sets: dict[str, EncodedSet], durations: list[float],
                record: Callable | None = None) -> tuple[list[Cell], dict[str, str]]:
    """The cells in table order (config, pipeline, format) and each config's sampling description.
    `record(config, pipeline, format, clip, rep, times)` sees every shared-span call."""
    from vmb.config import load_config
    from vmb.data.loader import clip_spec_from_cfg

    augment = apply_clip_augment
    cells, configs = [], {}
    prepared = _prepared_name(sets)
    for cfg_path in args.cfg:
        cfg = load_config(cfg_path, [])
        spec = clip_spec_from_cfg(cfg)
        name = pathlib.Path(cfg_path).stem
        configs[name] = _describe(spec)
        spans = Spans(spec, tuple(durations), args.seed)
        fns = {}
        for fmt, encoded in sets.items():
            dataset, torchcodec_dataset = (
                KineticsDataset(encoded.data_dir, "train", cfg.MODEL.NUM_CLASSES, replace(spec, backend=backend),
                                train=True, seed=args.seed) for backend in ("pyav", "torchcodec"))
            hook = None if record is None else \
                (lambda p, clip, rep, times, fmt=fmt, name=name: record(name, p, fmt, clip, rep, times))
            fns[fmt] = make_fns(spec, spans, [str(p) for p in encoded.paths], dataset, augment, hook,
                                torchcodec_dataset)
        for pipeline in PIPELINES:
            for fmt in sets:
                if pipeline in fns[fmt] and (pipeline != "augment_device" or fmt == prepared):
                    cells.append(Cell(name, cfg.MODEL.ARCH, pipeline, fmt, fns[fmt][pipeline]))
    return cells, configs


def _prepared_name(sets: dict[str, EncodedSet]) -> str:
    """The format the device augment row reads its samples from: the prepared one if studied, else the first."""
    prepared = study_formats(None)[1]
    return prepared if prepared in sets else next(iter(sets))
