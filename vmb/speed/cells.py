"""Set-up of the loader study: its command line, its clips, and its cells (config x pipeline x format)."""
from __future__ import annotations

import argparse
import pathlib
from dataclasses import replace
from importlib import metadata

from vmb.errors import ConfigError
from vmb.speed.clips import ClipSource, EncodedSet, prepare_clips


def build_parser() -> argparse.ArgumentParser:
    from vmb.speed.loader_bench import DEFAULT_CONFIGS

    parser = argparse.ArgumentParser(
        description="Format and loader study: training clips/s per core of VMB's pipelines, the bare PyAV and "
                    "torchcodec decode bounds, naive PyAV and PyTorchVideo, on source-like clips and on each "
                    "candidate prepared format, side by side in one process.")
    parser.add_argument("--cfg", action="append", help="config whose sampling and augmentation to use; repeat for "
                                                       f"several (default: {' and '.join(DEFAULT_CONFIGS)})")
    parser.add_argument("--clips", type=int, default=8, help="number of clips (default: %(default)s)")
    parser.add_argument("--videos", help="use the first --clips videos of this folder as source frames instead "
                                         "of synthetic clips")
    parser.add_argument("--work-dir", help="where the encodings are cached (default: a temporary folder, removed "
                                           "at the end)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per cell (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds the seconds are split into "
                                                             "(default: %(default)s)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="time cells by this process's CPU time (default; on a shared machine other processes "
                             "do not slow it) or by wall-clock time; both are recorded")
    parser.add_argument("--formats", nargs="+", help="formats to study (default: all of vmb.data.formats."
                                                     "CANDIDATES; 'prepared' names formats.PREPARED)")
    parser.add_argument("--clip-seconds", type=float, default=10.0, help="synthetic clip length (default: 10)")
    parser.add_argument("--size", default="454x256", help="synthetic clip WIDTHxHEIGHT (default: %(default)s)")
    parser.add_argument("--fps", type=int, default=30, help="synthetic clip frame rate (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the clips, spans and crops (default: 0)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    return parser


def check_args(args: argparse.Namespace) -> None:
    from vmb.speed.loader_bench import DEFAULT_CONFIGS

    args.cfg = list(dict.fromkeys(args.cfg or DEFAULT_CONFIGS))
    if args.clips < 1 or args.rounds < 1 or args.seconds <= 0 or args.clip_seconds <= 0 or args.fps < 1:
        raise ConfigError("--clips, --rounds, --fps, --seconds and --clip-seconds must be positive")
    try:
        args.width, args.height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size {args.size}: expected WIDTHxHEIGHT, e.g. 454x256") from None


def prepare(args, formats, work_dir: pathlib.Path, log) -> tuple[ClipSource, dict[str, EncodedSet], list[float]]:
    source = ClipSource(num_clips=args.clips, width=args.width, height=args.height, seconds=args.clip_seconds,
                        fps=args.fps, seed=args.seed, videos=args.videos)
    sets, durations = prepare_clips(source, formats, work_dir, log)
    return source, sets, durations


def _describe(spec) -> str:
    crop = "random resized crop" if spec.rrc_scale else f"scale jitter {list(spec.train_jitter_scales)} + crop"
    extra = []
    if spec.rand_augment is not None:
        extra.append("RandAugment")
    if spec.erase_prob > 0:
        extra.append("random erasing")
    return (f"{spec.num_frames}x{spec.sampling_rate} at {spec.target_fps:g} fps, {crop} {spec.train_crop_size}, "
            f"flip" + "".join(f", {e}" for e in extra))


def build_cells(args, sets: dict[str, EncodedSet], durations: list[float], record=None):
    """The cells in table order (config, pipeline, format) and each config's sampling description.
    `record(config, pipeline, format, clip, rep, times)` sees every shared-span call."""
    from vmb.config import load_config
    from vmb.data.kinetics import KineticsDataset
    from vmb.data.loader import clip_spec_from_cfg
    from vmb.speed.loader_bench import Cell
    from vmb.speed.pipelines import PIPELINES, Spans, device_augment, make_fns

    augment = device_augment()
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
    from vmb.speed.loader_bench import study_formats

    prepared = study_formats(None)[1]
    return prepared if prepared in sets else next(iter(sets))


def versions() -> dict[str, str]:
    found = {}
    for package in ("torch", "av", "torchcodec", "pytorchvideo", "numpy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "missing"
    return found
