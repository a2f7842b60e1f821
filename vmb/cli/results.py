"""`vmb-results` / `tools/results.py`: check and score submission folders, and build the static results site."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from vmb.errors import exit_on_error


@exit_on_error
def main(argv: Sequence[str] | None = None) -> int:
    """`tools/results.py`: check and score submission folders against a reference, and write the results site.

    Exit status 0 when the site was built (invalid submissions are listed in it, not ranked, and printed on
    stderr), 2 for a usage error.
    """

    parser = argparse.ArgumentParser(description="Build the VMB results site from submission folders: a ranked, "
                                                 "sortable table (index.html), results.csv and one report per "
                                                 "submission. Open SITE/index.html in a browser; no server needed.")
    parser.add_argument("submissions", nargs="+", type=Path, metavar="SUBMISSION_DIR",
                        help="submission folders (tools/package.py; unpack tarballs first)")
    parser.add_argument("--reference", type=Path, required=True, metavar="FILE",
                        help="the reference JSON the submissions are scored against (see references/)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="SITE",
                        help="folder to write the site into (new, or empty)")
    parser.add_argument("--cost-per-hour", type=float, metavar="PRICE",
                        help="price of one hour of a submission's accelerator system: adds cost to target")
    args = parser.parse_args(argv)
    if args.cost_per_hour is not None and not args.cost_per_hour > 0:
        parser.error("--cost-per-hour must be a positive price")
    # Imported after parsing, so that a usage error answers at once.
    from vmb.scoring.reference import load_reference
    from vmb.scoring.results.site import build_site

    site = build_site(args.submissions, load_reference(args.reference), args.output, args.cost_per_hour)
    for entry in site.not_ranked:
        for reason in entry.reasons:
            print(f"not ranked: {reason}", file=sys.stderr)
    print(f"results: {site.index} ({site.n_ranked} ranked, {len(site.not_ranked)} not ranked); "
          f"open it in a browser (file://{site.index.resolve()})")
    return 0
