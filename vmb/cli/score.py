"""`vmb-score` / `tools/score.py`: check runs (or submission packages) and score them against a reference."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from vmb.errors import exit_on_error


@exit_on_error
def main(argv: Sequence[str] | None = None) -> int:
    """`tools/score.py`: check runs (or submission packages) and score them against a reference.

    Exit status 0 for a valid set, 1 for an invalid one, 2 for a usage error.
    """

    parser = argparse.ArgumentParser(description="Check VMB runs or submission packages, and score them.")
    parser.add_argument("paths", nargs="+", type=Path, help="run folders, or submission folders (with MANIFEST.sha256)")
    parser.add_argument("--reference", type=Path, help="reference JSON (see references/); without it, times only")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--report", type=Path, metavar="DIR", help="also write report.md, report.html and plots")
    parser.add_argument("--make-reference", action="store_true", help="write a reference from these runs to -o")
    parser.add_argument("-o", "--output", type=Path, help="the reference file written by --make-reference")
    parser.add_argument("--cost-per-hour", type=float, metavar="PRICE",
                        help="price of one hour of the submission's accelerator system: adds cost to target")
    args = parser.parse_args(argv)
    if args.cost_per_hour is not None and not args.cost_per_hour > 0:
        parser.error("--cost-per-hour must be a positive price")
    if args.make_reference and (args.output is None or args.reference is not None):
        parser.error("--make-reference needs -o FILE and no --reference")
    # Imported after parsing, so that a usage error answers at once.
    import shlex

    from vmb.scoring import assess, package, reference, report

    ref = reference.load_reference(args.reference) if args.reference else None
    run_dirs, set_reasons = package.collect_runs(args.paths)
    assessment = assess.assess(run_dirs, ref, set_reasons, args.cost_per_hour)
    print(json.dumps(report.to_json(assessment), indent=2) if args.json else report.format_text(assessment))
    if args.report:
        written = report.write_report(assessment, args.report)
        print(f"report: {', '.join(str(p) for p in written)}", file=sys.stderr if args.json else sys.stdout)
    if args.make_reference:
        command = "python tools/score.py " + shlex.join(sys.argv[1:] if argv is None else argv)
        reference.write_reference(assess.make_reference(assessment, command), args.output)
        print(f"reference written to {args.output}", file=sys.stderr if args.json else sys.stdout)
    return 0 if assessment.valid else 1
