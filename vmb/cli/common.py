"""What several commands share: the `--cfg CONFIG [KEY VALUE ...]` options."""
from __future__ import annotations

import argparse


DEFAULT_CONFIG = "configs/smoke/X3D.yaml"  # the smoke benchmark: what every command runs without --cfg


def config_parser(description: str, cfg_help: str = "YAML config") -> argparse.ArgumentParser:
    """A parser with `--cfg` (default: the smoke benchmark) and trailing KEY VALUE overrides."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--cfg", dest="cfg_file", default=DEFAULT_CONFIG,
                        help=f"{cfg_help} (default: the smoke benchmark, %(default)s)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides, e.g. NUM_GPUS 4")
    return parser
