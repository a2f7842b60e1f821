"""The loader study's command line: `build_parser` and `check_args` (which completes the parsed arguments)."""
from __future__ import annotations

import argparse

from vmb.errors import ConfigError

DEFAULT_CONFIGS = ("configs/X3D_M.yaml", "configs/MVIT_B_16x4.yaml")


def build_parser() -> argparse.ArgumentParser:
    """The options of `tools/bench_loader.py`."""
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
    parser.add_argument("--formats", nargs="+", help="formats to study (default: all of vmb.data.prepare.formats."
                                                     "CANDIDATES; 'prepared' names formats.PREPARED)")
    parser.add_argument("--clip-seconds", type=float, default=10.0, help="synthetic clip length (default: 10)")
    parser.add_argument("--size", default="454x256", help="synthetic clip WIDTHxHEIGHT (default: %(default)s)")
    parser.add_argument("--fps", type=int, default=30, help="synthetic clip frame rate (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the clips, spans and crops (default: 0)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Check the parsed options (ConfigError: one line) and complete them: `cfg` defaults to DEFAULT_CONFIGS
    (repeats dropped), `width` and `height` come from `--size`."""
    args.cfg = list(dict.fromkeys(args.cfg or DEFAULT_CONFIGS))
    if args.clips < 1 or args.rounds < 1 or args.seconds <= 0 or args.clip_seconds <= 0 or args.fps < 1:
        raise ConfigError("--clips, --rounds, --fps, --seconds and --clip-seconds must be positive")
    try:
        args.width, args.height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size {args.size}: expected WIDTHxHEIGHT, e.g. 454x256") from None
