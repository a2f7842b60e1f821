"""`vmb-system-check` / `tools/system_check.py`: the machine check before a submission, within a time budget."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from vmb.errors import ConfigError, exit_on_error
from vmb.speed.system_check.runner import run_check


def build_parser() -> argparse.ArgumentParser:
    """The command line of tools/system_check.py."""
    parser = argparse.ArgumentParser(
        description="Every GPU figure VMB needs from this machine (environment, CUDA tests, dry runs per decoding "
                    "backend, training and inference speed, NCCL bandwidth, CPU cores per GPU) within a time "
                    "budget; writes system_check.json and system_check.md to --out.")
    parser.add_argument("--out", required=True, help="output folder (created if missing; its data/ is reused)")
    parser.add_argument("--budget-min", type=float, default=8.0,
                        help="wall-clock budget of the whole command in minutes (default: %(default)s)")
    return parser


@exit_on_error
def main(argv: Sequence[str] | None = None) -> int:
    """`tools/system_check.py`. Exit status 0 (every cell that ran is ok), 1 (a cell failed or timed out), 2 (a
    usage error), 130 (Ctrl-C; what finished is written)."""
    args = build_parser().parse_args(argv)
    if not args.budget_min > 0:
        raise ConfigError(f"--budget-min {args.budget_min:g}: must be a positive number of minutes")
    out = Path(args.out).resolve()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {args.out} is a file: give a folder (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {args.out}: cannot create the folder ({exc.strerror})") from None
    return run_check(out, args.budget_min)
