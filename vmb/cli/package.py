"""`vmb-package` / `tools/package.py`: gather runs into a submission folder and tarball that vmb-score verifies."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from vmb.errors import exit_on_error


@exit_on_error
def main(argv: Sequence[str] | None = None) -> int:
    """`tools/package.py`: gather runs into a submission folder and tarball that tools/score.py verifies."""

    from vmb.scoring.package import make_package

    parser = argparse.ArgumentParser(description="Package VMB runs into a verifiable submission folder.")
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (OUTPUT_DIR of each run)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="submission folder to create")
    args = parser.parse_args(argv)
    tarball = make_package(args.runs, args.output)
    print(f"packaged {len(args.runs)} run(s) into {args.output}/ and {tarball}")
    print(f"verify with: python tools/score.py {args.output}")
    return 0
