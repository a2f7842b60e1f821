"""What several commands share: the `--cfg CONFIG [KEY VALUE ...]` options."""
from __future__ import annotations

import argparse


def config_parser(description: str) -> argparse.ArgumentParser:
    """A parser with `--cfg` (default: the smoke benchmark) and trailing KEY VALUE overrides."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--cfg", dest="cfg_file", default="configs/smoke/X3D.yaml",
                        help="YAML config (default: the smoke benchmark, configs/smoke/X3D.yaml)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides, e.g. NUM_GPUS 4")
    return parser
