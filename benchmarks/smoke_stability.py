"""Time-to-target stability of a smoke config over several seeds, one fresh process per run.

    python benchmarks/smoke_stability.py --cfg configs/smoke/X3D.yaml --seeds 0 1 2 3 4 --out runs/stability

Prints, per seed, the status, time to target, epochs and training clips/s, then the mean, the
coefficient of variation (sample standard deviation / mean, as tools/score.py) and the min/max ratio. Runs are
sequential so they do not share the CPU. Extra `KEY VALUE` pairs go to every run. A seed given more
than once (`--seeds 0 0 0`) is run again in a fresh folder: identical work, so its spread is the
machine's timing noise alone.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", default="configs/smoke/X3D.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", default="runs/stability")
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    name = Path(args.cfg).stem.lower()
    rows = []
    for k, seed in enumerate(args.seeds):
        repeat = args.seeds[:k].count(seed)  # a repeated seed reruns identical work: the clock's own noise
        out_dir = Path(args.out) / (f"{name}_seed{seed}" + (f"_repeat{repeat}" if repeat else ""))
        cmd = [sys.executable, "tools/run_net.py", "--cfg", args.cfg, "RNG_SEED", str(seed),
               "OUTPUT_DIR", str(out_dir), *args.opts]
        proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
        if proc.returncode not in (0, 1):  # 1: finished without reaching the target, counted below
            print(f"seed {seed}: run failed ({proc.stderr.strip().splitlines()[-1:]})")
            return 1
        result = json.loads((REPO_ROOT / out_dir / "result.json").read_text())
        rows.append(result)
        print(f"seed {seed}: {result['status']:8s} {result['time_to_target_s']:7.1f} s  "
              f"{result['epochs']:6.2f} epochs  best top-1 {result['best_top1']:6.2f}%  "
              f"{result['train_clips_per_s']:6.1f} train clips/s", flush=True)
    times = [r["time_to_target_s"] for r in rows]
    epochs = [r["epochs"] for r in rows]
    failed = sum(r["status"] != "success" for r in rows)
    mean = statistics.fmean(times)
    cv = statistics.stdev(times) / mean
    print(f"{name}: {len(rows)} runs, {failed} missed the target; time to target mean {mean:.1f} s, "
          f"CV {100 * cv:.1f} %, min {min(times):.1f} s, max {max(times):.1f} s (max/min {max(times) / min(times):.2f}); "
          f"epochs mean {statistics.fmean(epochs):.2f}, CV {100 * statistics.stdev(epochs) / statistics.fmean(epochs):.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
