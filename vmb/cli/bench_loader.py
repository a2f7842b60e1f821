"""`vmb-bench-loader` / `tools/bench_loader.py`: the format and loader study (training clips/s per core)."""
from __future__ import annotations

from typing import Sequence

from vmb.errors import exit_on_error


@exit_on_error
def main(argv: Sequence[str] | None = None) -> int:
    """`tools/bench_loader.py`: the format and loader study (training clips/s per core, side by side)."""
    from vmb.speed.loader.options import build_parser, check_args
    from vmb.speed.loader.study import run_study

    args = build_parser().parse_args(argv)
    check_args(args)
    run_study(args)
    return 0
