"""`vmb-test` / `tools/test_net.py`: multi-view top-1 / top-5 of a checkpoint on the val split, per precision."""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Sequence

from vmb.cli.common import config_parser
from vmb.engine import distributed
from vmb.engine.multiview import test_checkpoint
from vmb.engine.precision import PRECISIONS
from vmb.errors import exit_on_error
from vmb.record.schema import CHECKPOINT_FILE


def _parse_views(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"([0-9]+)x([0-9]+)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not CLIPSxCROPS, e.g. 10x3")
    return int(match[1]), int(match[2])


def _parse_precisions(text: str) -> list[str]:
    names = list(dict.fromkeys(name.strip() for name in text.split(",")))
    unknown = [name for name in names if name not in PRECISIONS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {unknown[0]!r}; choose from {', '.join(PRECISIONS)}")
    return names


@exit_on_error
def main(argv: Sequence[str] | None = None) -> int:
    """`tools/test_net.py`: multi-view top-1 / top-5 of a checkpoint on the val split, per precision."""
    from vmb.config import load_config

    parser = config_parser("Test a checkpoint on the val split with multi-view testing.",
                           cfg_help="the YAML config the checkpoint was trained with")
    parser.add_argument("--checkpoint", type=Path,
                        help=f"checkpoint to test (default: the config's OUTPUT_DIR/{CHECKPOINT_FILE})")
    parser.add_argument("--views", type=_parse_views, metavar="CLIPSxCROPS",
                        help="e.g. 10x3: sets TEST.NUM_ENSEMBLE_VIEWS and TEST.NUM_SPATIAL_CROPS")
    parser.add_argument("--precision", type=_parse_precisions, default=["fp32"],
                        help="comma-separated, of fp32, bf16 (autocast), fp16 (autocast, CUDA only); default fp32")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results to FILE as JSON")
    args = parser.parse_args(argv)
    views = ["TEST.NUM_ENSEMBLE_VIEWS", str(args.views[0]), "TEST.NUM_SPATIAL_CROPS", str(args.views[1])] \
        if args.views else []
    cfg = load_config(args.cfg_file, [*args.opts, *views])
    checkpoint = args.checkpoint or Path(cfg.OUTPUT_DIR) / CHECKPOINT_FILE
    # One process per GPU, as tools/run_net.py starts them (vmb.engine.distributed's process rule); a single one
    # runs here, so that its errors reach exit_on_error.
    processes = distributed.processes_to_spawn(cfg.NUM_GPUS)
    distributed.launch(processes, test_checkpoint if processes == 1 else _spawned_test, cfg, args.cfg_file, checkpoint,
                       args.precision, args.json)
    return 0


def _spawned_test(cfg, cfg_file: str, checkpoint: Path, precisions: list[str], json_path: Path | None) -> None:
    """Entry of each spawned testing process: a user error ends that process with one line, not a traceback."""
    status = exit_on_error(lambda: test_checkpoint(cfg, cfg_file, checkpoint, precisions, json_path))()
    if status:
        sys.exit(status)
