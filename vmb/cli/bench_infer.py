"""`vmb-bench-infer` / `tools/bench_infer.py`: inference latency and throughput of zoo models, per runtime and
precision."""
from __future__ import annotations

import sys
from typing import Sequence

from vmb.errors import exit_on_error
from vmb.speed.infer import build_parser, check_args, make_header, run_cells


@exit_on_error
def main(argv: Sequence[str] | None = None) -> int:
    """`tools/bench_infer.py`: exit status 0, 2 for a usage error, 130 if interrupted (finished cells kept)."""
    from vmb.speed import infer_report

    args = build_parser().parse_args(argv)
    check_args(args)
    infer_report.prepare_outputs([args.json, args.csv], args.report)
    header = make_header(args)
    rows, interrupted = run_cells(args, header, lambda line: print(line, file=sys.stderr, flush=True))
    document = {"header": header, "interrupted": interrupted, "cells": rows}
    print(infer_report.format_text(document))
    written = []
    if args.json:
        written.append(infer_report.write_json(document, args.json))
    if args.csv:
        written.append(infer_report.write_csv(rows, args.csv))
    if args.report:
        written += infer_report.write_report(document, args.report)
    if written:
        print(f"written: {', '.join(map(str, written))}")
    return 130 if interrupted else 0
