"""`vmb-train` / `tools/run_net.py`: train a config to its target top-1, timed.

Exit status: 0 the run reached its target, 1 it stopped without (`run_status`), 2 a user error or a full or
failing disk (one line; after the disk is fixed the same command resumes), 143 preempted (SIGTERM or SIGUSR2:
one line, and the same command resumes; vmb.engine.preemption), 130 Ctrl-C.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from vmb.cli.common import config_parser
from vmb.errors import VMBError, exit_on_error


def _train_process(cfg) -> None:
    """Entry of each training process: a user error or a preemption ends that process with one line, not a
    traceback."""
    from vmb.engine.preemption import PREEMPTED_EXIT, Preempted
    from vmb.engine.train import run

    result: dict = {}
    try:
        status = exit_on_error(lambda: result.update(run(cfg) or {}))()
    except Preempted:  # its line is printed
        sys.exit(PREEMPTED_EXIT)
    if status:
        sys.exit(status)
    if result:
        print(f"{result['benchmark'] or result['arch']}: {result['status']} in {result['time_to_target_s']:.1f} s "
              f"(best top-1 {result['best_top1']:.2f}%, target {result['target_top1']:.2f}%, "
              f"{result['epochs']:.2f} epochs); results in {cfg.OUTPUT_DIR}/result.json")


@exit_on_error
def main(argv: Sequence[str] | None = None) -> int:
    """`tools/run_net.py`: train a config to its target, timed."""
    from vmb.config import load_config
    from vmb.engine import distributed
    from vmb.engine.preemption import PREEMPTED_EXIT, StopSignal

    args = config_parser("Train a video model to its target top-1 (timed).").parse_args(argv)
    cfg = load_config(args.cfg_file, args.opts)
    processes = distributed.processes_to_spawn(cfg.NUM_GPUS)
    if processes == 1:
        distributed.launch(1, _train_process, cfg)  # in this process, which handles its signals itself
        return run_status(Path(cfg.OUTPUT_DIR))
    # The scheduler signals this process too: it waits for the processes it started, which stop on their own
    # (each prints its line), and reports their preemption instead of a failed process.
    with StopSignal().caught() as stop:
        try:
            distributed.launch(processes, _train_process, cfg)
        except VMBError:
            if stop.received is None:
                raise
            return PREEMPTED_EXIT
    return run_status(Path(cfg.OUTPUT_DIR))


def run_status(out_dir: Path) -> int:
    """run_net's exit status for a finished run: 0 if it reached its target, 1 if it stopped without (status
    "aborted", e.g. at SOLVER.MAX_EPOCH). Read from result.json, which rank 0 writes; a process that cannot
    see it (another machine) reports 0 and leaves the verdict to rank 0."""
    from vmb.record.schema import RESULT

    result = out_dir / RESULT
    if result.is_file() and json.loads(result.read_text()).get("status") != "success":
        print(f"target not reached: see {result}", file=sys.stderr)
        return 1
    return 0
