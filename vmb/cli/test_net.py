"""`vmb-test` / `tools/test_net.py`: multi-view top-1 / top-5 of a checkpoint on the val split, per runtime and
precision."""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from vmb.cli.common import config_parser
from vmb.engine import distributed
from vmb.engine.multiview import EagerCells, test_checkpoint
from vmb.engine.precision import PRECISIONS
from vmb.errors import ConfigError, exit_on_error
from vmb.record.schema import CHECKPOINT_FILE
from vmb.speed.quantize import DEFAULT_CALIBRATION_CLIPS
from vmb.speed.runtimes import DEPLOY_PRECISIONS, ONNX_RUNTIMES, RUNTIMES, checkpoint_cells


def _parse_views(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"([0-9]+)x([0-9]+)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not CLIPSxCROPS, e.g. 10x3")
    return int(match[1]), int(match[2])


def _choices(valid: Sequence[str]) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated list of names from `valid`, duplicates dropped."""
    def parse(text: str) -> list[str]:
        names = list(dict.fromkeys(name.strip() for name in text.split(",")))
        unknown = [name for name in names if name not in valid]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown[0]!r}; choose from {', '.join(valid)}")
        return names

    return parse


@exit_on_error
def main(argv: Sequence[str] | None = None) -> int:
    """`tools/test_net.py`: multi-view top-1 / top-5 of a checkpoint on the val split, per runtime and precision."""
    from vmb.config import load_config

    parser = config_parser("Test a checkpoint on the val split with multi-view testing, per runtime and precision.",
                           cfg_help="the YAML config the checkpoint was trained with")
    parser.add_argument("--checkpoint", type=Path,
                        help=f"checkpoint to test (default: the config's OUTPUT_DIR/{CHECKPOINT_FILE})")
    parser.add_argument("--views", type=_parse_views, metavar="CLIPSxCROPS",
                        help="e.g. 10x3: sets TEST.NUM_ENSEMBLE_VIEWS and TEST.NUM_SPATIAL_CROPS")
    parser.add_argument("--runtime", type=_choices(RUNTIMES), default=["torch"],
                        help=f"comma-separated, of {', '.join(RUNTIMES)} (docs/SPEED.md); default torch")
    parser.add_argument("--precision", type=_choices(DEPLOY_PRECISIONS), default=["fp32"],
                        help="comma-separated, of fp32, bf16 (autocast), fp16 (CUDA only), int8 (onnxruntime on the "
                             "CPU, tensorrt); default fp32")
    parser.add_argument("--onnx", type=Path, metavar="FILE",
                        help="the checkpoint's ONNX export (tools/export.py) for the onnxruntime and tensorrt cells; "
                             "default: exported here")
    parser.add_argument("--calib-clips", type=int, default=DEFAULT_CALIBRATION_CLIPS, metavar="N",
                        help="int8: calibration clips drawn from the train split (default: %(default)s)")
    parser.add_argument("--calib-seed", type=int, default=0, metavar="S",
                        help="int8: seed of the calibration clips' draw (default: %(default)s)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results to FILE as JSON")
    args = parser.parse_args(argv)
    views = ["TEST.NUM_ENSEMBLE_VIEWS", str(args.views[0]), "TEST.NUM_SPATIAL_CROPS", str(args.views[1])] \
        if args.views else []
    cfg = load_config(args.cfg_file, [*args.opts, *views])
    checkpoint = args.checkpoint or Path(cfg.OUTPUT_DIR) / CHECKPOINT_FILE
    cells = [(runtime, precision) for runtime in args.runtime for precision in args.precision]
    if args.onnx and not set(args.runtime) & set(ONNX_RUNTIMES):
        raise ConfigError(f"--onnx {args.onnx}: only the {' and '.join(ONNX_RUNTIMES)} runtimes run ONNX files; add "
                          "--runtime onnxruntime")
    # One process per GPU, as tools/run_net.py starts them (vmb.engine.distributed's process rule); a single one
    # runs here, so that its errors reach exit_on_error.
    processes = distributed.processes_to_spawn(cfg.NUM_GPUS)
    with tempfile.TemporaryDirectory(prefix="vmb-test-") as folder:
        if all(runtime == "torch" and precision in PRECISIONS for runtime, precision in cells):
            factory = EagerCells()  # eager PyTorch only: nothing of vmb.speed's deployment runtimes is needed
        else:
            factory = checkpoint_cells(cfg, args.cfg_file, checkpoint, cells, Path(folder), args.onnx, args.calib_clips,
                                 args.calib_seed)
        distributed.launch(processes, test_checkpoint if processes == 1 else _spawned_test, cfg, args.cfg_file,
                           checkpoint, cells, args.json, factory)
    return 0


def _spawned_test(cfg, cfg_file: str, checkpoint: Path, cells: list[tuple[str, str]], json_path: Path | None,
                  factory) -> None:
    """Entry of each spawned testing process: a user error ends that process with one line, not a traceback."""
    status = exit_on_error(lambda: test_checkpoint(cfg, cfg_file, checkpoint, cells, json_path, factory))()
    if status:
        sys.exit(status)
