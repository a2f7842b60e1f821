"""`vmb-bench-train` / `tools/bench_train.py`: seconds per training iteration of one device, and VMB's overhead."""
from __future__ import annotations

import json
import sys
from typing import Sequence

import torch

from vmb.errors import exit_on_error
from vmb.speed import train_bench
from vmb.speed.memory import is_oom
from vmb.speed.train_bench import (IterTimes, build_parser, build_setup, check_args, compare_overhead, measure,
                                   pick_device)
from vmb.speed.train_report import format_result, make_result


@exit_on_error
def main(argv: Sequence[str] | None = None) -> int:
    """`tools/bench_train.py`. Exit status 0; 1 out of memory; 2 a usage error; 130 interrupted (what was
    measured is still reported)."""
    args = build_parser().parse_args(argv)
    check_args(args)
    device = pick_device(args.device)
    result = {"status": "ok", "model": args.model, "config": args.cfg, "device": str(device),
              "iters": args.iters, "warmup": args.warmup}
    times, rounds, code = IterTimes(), [], 0
    threads = torch.get_num_threads()
    try:
        setup = build_setup(args, device, result)
        measure(setup.batches, lambda batch: train_bench.vmb_step(setup.trainer, batch), args.iters, args.warmup,
                device, times)
        compare_overhead(setup.trainer, setup.batch, setup.bare_input, args.rounds, args.round_steps, rounds)
    except KeyboardInterrupt:
        result["status"], code = "interrupted: the iterations and rounds finished so far are reported", 130
    except (RuntimeError, MemoryError) as exc:  # torch.OutOfMemoryError is a RuntimeError
        if not is_oom(exc):
            raise
        result["status"], code = (f"out of memory at batch size {result.get('batch_size')} "
                                  f"({result.get('precision')}): try a smaller --batch-size"), 1
    finally:
        torch.set_num_threads(threads)
    if "system" not in result:  # stopped before the model was built: nothing to report
        print(result["status"], file=sys.stderr)
        return code
    make_result(result, times, rounds, args.round_steps, device)
    print(format_result(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"JSON written to {args.json}")
    return code
