"""Smoke time to target with and without the per-step sync fix, side by side in one process.

    python benchmarks/sync_fix.py --cfg configs/smoke/X3D.yaml --pairs 2 --out runs/sync_fix

The fix: `normalize`'s mean/std tensors are built once per device (vmb.data.transforms._channel_constants).
Before it they were built from Python lists on every call, which on CUDA is a blocking host-to-device copy,
a CPU-GPU synchronisation, twice per training step. "without" swaps that per-call version back in for the
trainer and the evaluation. Runs alternate (with, without, with, ...) so that drifts of the machine hit both;
each pair prints both times, then the mean ratio. On a CPU there is no device to wait for: the ratio shows
only the cost of building the tensors.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Sequence

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

from vmb.config import load_config
from vmb.engine import evaluate, train


def normalize_per_call(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """The version before the fix: constants built (and copied to the device) on every call."""
    mean_t = torch.tensor(mean, device=batch.device).view(1, -1, 1, 1, 1) * 255.0
    std_t = torch.tensor(std, device=batch.device).view(1, -1, 1, 1, 1) * 255.0
    return batch.float().sub_(mean_t).div_(std_t)  # otherwise as normalize: only the constants differ


def timed_run(cfg_file: str, out_dir: Path, opts: list[str], per_call: bool) -> dict:
    fixed = train.normalize
    if per_call:
        train.normalize = evaluate.normalize = normalize_per_call
    try:
        return train.run(load_config(cfg_file, [*opts, "OUTPUT_DIR", str(out_dir), "TENSORBOARD.ENABLE", "False"]))
    finally:
        train.normalize = evaluate.normalize = fixed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", default="configs/smoke/X3D.yaml")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--out", default="runs/sync_fix")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every run")
    args = parser.parse_args()
    ratios = []
    for pair in range(args.pairs):
        times = {}
        for label, per_call in (("with fix", False), ("without", True)):
            result = timed_run(args.cfg, Path(args.out) / f"pair{pair}_{label.replace(' ', '_')}", args.opts, per_call)
            times[label] = result["time_to_target_s"]
            print(f"pair {pair}: {label:8s} {result['status']:8s} {result['time_to_target_s']:7.1f} s "
                  f"{result['epochs']:6.2f} epochs {result['train_clips_per_s']:6.1f} train clips/s", flush=True)
        ratios.append(times["without"] / times["with fix"])
    print(f"time to target without / with the fix: {statistics.fmean(ratios):.3f} (pairs: "
          f"{', '.join(f'{r:.3f}' for r in ratios)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
