#!/usr/bin/env python3
"""Generate the synthetic 20-class "smoke" video dataset (Kinetics layout) used to test the benchmark.

Example: python tools/make_synthetic.py --out data/smoke
"""
import argparse
import pathlib
import sys
import time

try:
    import vmb  # noqa: F401
except ImportError:
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from vmb.data.synthetic import SyntheticSpec, ensure_synthetic_dataset
from vmb.errors import VMBError


def parse_args() -> argparse.Namespace:
    defaults = SyntheticSpec()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/smoke", help="dataset folder (default: %(default)s)")
    parser.add_argument("--train-per-class", type=int, default=defaults.train_per_class)
    parser.add_argument("--val-per-class", type=int, default=defaults.val_per_class)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--force", action="store_true", help="replace an existing dataset with another spec")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    start = time.perf_counter()
    try:
        spec = SyntheticSpec(train_per_class=args.train_per_class, val_per_class=args.val_per_class, seed=args.seed)
        out = ensure_synthetic_dataset(args.out, spec, force=args.force)
    except VMBError as error:
        sys.exit(f"error: {error}")
    print(
        f"synthetic dataset ready in {out}: {spec.num_classes} classes, "
        f"{spec.train_per_class * spec.num_classes} train / {spec.val_per_class * spec.num_classes} val videos, "
        f"{spec.width}x{spec.height}, {spec.num_frames} frames @ {spec.fps} fps ({time.perf_counter() - start:.1f}s)"
    )


if __name__ == "__main__":
    main()
