"""Fault tolerance of a timed run: `kill -9` it at random moments, rerun the same command each time, score it.

    python benchmarks/kill_resume.py --cfg configs/smoke/MVIT.yaml --kills 5 --out runs/kill_resume

Starts the run, sends SIGKILL after a random delay (uniform in --min-s..--max-s seconds of that attempt's
life, so kills land anywhere: during start-up, training, evaluation or a checkpoint write), reruns the
identical command, and repeats until --kills kills have struck; the last attempt runs to the end. Then it
prints what each kill interrupted (the last run-log event before it) and scores the folder with
tools/score.py against --reference. Every attempt's console output goes to OUT.console.txt. Extra `KEY VALUE` pairs go to every attempt.
"""
from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

from vmb.record.runlog import read_events

from vmb.record.schema import RUN_LOG


def last_event(out_dir: Path) -> str:
    """The key and epoch of the last event in the run log (what the kill interrupted), or "no run log"."""
    log = out_dir / RUN_LOG
    if not log.exists():
        return "no run log"
    events = read_events(log) if log.read_bytes().endswith(b"\n") else []
    if not events:
        return "an incomplete first line" if log.stat().st_size else "an empty run log"
    event = events[-1]
    epoch = event.metadata.get("epoch_num")
    return f"{event.key}" + (f" (epoch {epoch})" if epoch is not None else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", default="configs/smoke/MVIT.yaml")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--min-s", type=float, default=5.0)
    parser.add_argument("--max-s", type=float, default=25.0)
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill delays")
    parser.add_argument("--out", default="runs/kill_resume")
    parser.add_argument("--reference", default="references/smoke.json")
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    out_dir = Path(args.out)
    if out_dir.exists():
        print(f"error: {out_dir} exists; choose a new --out", file=sys.stderr)
        return 2
    delays = random.Random(args.seed)
    cmd = [sys.executable, "tools/run_net.py", "--cfg", args.cfg, "OUTPUT_DIR", str(out_dir), *args.opts]
    kills, began = 0, time.monotonic()
    console = Path(f"{out_dir}.console.txt")  # every attempt's output (tqdm writes to stderr: no pipe to fill)
    while True:
        with open(REPO_ROOT / console, "a") as sink:
            proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=sink, stderr=subprocess.STDOUT)
        if kills < args.kills:
            delay = delays.uniform(args.min_s, args.max_s)
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                print(f"kill {kills} after {delay:5.1f} s of its attempt: interrupted after "
                      f"{last_event(REPO_ROOT / out_dir)}", flush=True)
                continue
        proc.wait()
        if proc.returncode not in (0, 1):
            print(f"the run failed (exit {proc.returncode}); see {console}", file=sys.stderr)
            return 1
        break
    print(f"finished after {kills} kill(s) in {time.monotonic() - began:.1f} s wall; scoring:", flush=True)
    return subprocess.run([sys.executable, "tools/score.py", str(out_dir), "--reference", args.reference],
                          cwd=REPO_ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
