"""`vmb-make-synthetic` / `tools/make_synthetic.py`: write a synthetic dataset (the smoke data, or a
Kinetics20-shaped dry-run set)."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from vmb.errors import exit_on_error


@exit_on_error
def main(argv: Sequence[str] | None = None) -> int:
    """`tools/make_synthetic.py`: write a synthetic dataset (the smoke data, or a Kinetics20-shaped dry-run set)."""
    import os
    import time

    from vmb.data.prepare.synthetic import PROFILE_DIRS, PROFILES, ensure_synthetic_dataset, profile_spec

    parser = argparse.ArgumentParser(description="Write a synthetic 20-class motion video dataset (Kinetics layout).")
    parser.add_argument("--profile", choices=list(PROFILES), default="smoke",
                        help="smoke: 96x72 at 15 fps, the smoke benchmark's data (default); kinetics: Kinetics20's "
                             "shape (456x256, 10 s at 30 fps, the prepared all-intra format) for configs/dryrun/")
    defaults = ", ".join(f"{folder} for {profile}" for profile, folder in PROFILE_DIRS.items())
    parser.add_argument("--out", help=f"dataset folder (default: {defaults})")
    parser.add_argument("--train-per-class", type=int, help="training videos per class (default: the profile's, 24)")
    parser.add_argument("--val-per-class", type=int, help="validation videos per class (default: the profile's, 8)")
    parser.add_argument("--seconds", type=float, help="clip length (default: the profile's)")
    parser.add_argument("--seed", type=int, help="dataset seed (default: 0)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes that render and encode videos (default: the CPU count, %(default)s)")
    parser.add_argument("--force", action="store_true", help="replace an existing dataset with another spec")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    spec = profile_spec(args.profile, args.train_per_class, args.val_per_class, args.seconds, args.seed)
    try:
        out = ensure_synthetic_dataset(args.out or PROFILE_DIRS[args.profile], spec, force=args.force,
                                       workers=args.workers, progress=True)
    except KeyboardInterrupt:
        print("interrupted: the dataset folder is as it was before this command", file=sys.stderr)
        return 130
    print(f"synthetic dataset ready in {out}: {spec.num_classes} classes, "
          f"{spec.train_per_class * spec.num_classes} train / {spec.val_per_class * spec.num_classes} val videos, "
          f"{spec.width}x{spec.height}, {spec.num_frames} frames @ {spec.fps} fps ({time.perf_counter() - start:.1f}s)")
    return 0
