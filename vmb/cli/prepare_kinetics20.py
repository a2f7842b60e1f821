"""`vmb-prepare-kinetics20` / `tools/prepare_kinetics20.py`: build Kinetics20 from a Kinetics-400 copy."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from vmb.errors import exit_on_error


@exit_on_error
def main(argv: Sequence[str] | None = None) -> int:
    """`tools/prepare_kinetics20.py`: build Kinetics20 from a Kinetics-400 copy (resumable; Ctrl-C is safe)."""

    from vmb.data.prepare.kinetics20 import build_kinetics20, default_workers

    parser = argparse.ArgumentParser(description="Build Kinetics20 (20 Kinetics-400 classes, re-encoded to the "
                                                 "benchmark's format) from the CVDF Kinetics-400 copy.")
    parser.add_argument("--k400", type=Path, required=True,
                        help="the Kinetics-400 copy: annotations/{train,val}.csv and the clips, at any depth")
    parser.add_argument("--out", type=Path, default=Path("data/kinetics20"),
                        help="output folder (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="clips prepared in parallel, one process each (default: the CPU cores, %(default)s)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    print(build_kinetics20(args.k400, args.out, args.workers).format())
    return 0
