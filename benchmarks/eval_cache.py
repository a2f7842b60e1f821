"""Cost of one validation pass with and without TEST.CACHE_CLIPS, side by side in one process.

    python benchmarks/eval_cache.py --cfg configs/smoke/MVIT.yaml --passes 5

Builds the config's model (untrained weights: the cost does not depend on them) and its validation
loader twice, decoding and cached, runs `--passes` evaluations with each, checks that every pass
counts the same (correct, total), and prints seconds per pass and the ratio. The first cached pass
decodes (and fills the cache); the ratio uses the later ones, which is what every evaluation of a
run after its first costs.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

import torch

from vmb.config import load_config
from vmb.data.loader import build_loaders, num_workers_here, usable_cores
from vmb.data.prepare.synthetic import ensure_config_dataset
from vmb.engine.distributed import cpu_threads
from vmb.engine.evaluate import evaluate
from vmb.models.build import build_model


def time_passes(cfg_file: str, opts: list[str], cache: bool, passes: int,
                model: torch.nn.Module) -> tuple[list[float], set]:
    """Seconds per evaluation pass and the set of (correct, total) results seen."""
    cfg = load_config(cfg_file, [*opts, "TEST.CACHE_CLIPS", str(cache)])
    _, val_loader = build_loaders(cfg, rank=0, world_size=1, device=torch.device("cpu"))
    seconds, results = [], set()
    for _ in range(passes):
        start = time.perf_counter()
        results.add(evaluate(model, val_loader, torch.device("cpu"), cfg.DATA.MEAN, cfg.DATA.STD,
                             contextlib.nullcontext()))
        seconds.append(time.perf_counter() - start)
    return seconds, results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", default="configs/smoke/MVIT.yaml")
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    cfg = load_config(args.cfg, args.opts)
    ensure_config_dataset(cfg)
    torch.set_num_threads(cpu_threads(usable_cores(), 1, num_workers_here(cfg.DATA_LOADER.NUM_WORKERS, cfg.DATA.DECODING_BACKEND)))
    torch.manual_seed(0)
    model = build_model(cfg)
    decoded, decoded_results = time_passes(args.cfg, args.opts, False, args.passes, model)
    cached, cached_results = time_passes(args.cfg, args.opts, True, args.passes, model)
    if len(decoded_results | cached_results) != 1:
        print(f"MISMATCH: decoding passes gave {decoded_results}, cached passes {cached_results}")
        return 1
    (correct, total), = decoded_results
    print(f"{args.cfg}: {total} val clips, {args.passes} passes each, every pass {correct}/{total} correct")
    print(f"  decoding:  {statistics.median(decoded):.3f} s/pass (median; all {[round(s, 3) for s in decoded]})")
    print(f"  cached:    first pass {cached[0]:.3f} s (decodes), then {statistics.median(cached[1:]):.3f} s/pass "
          f"(median; all {[round(s, 3) for s in cached[1:]]})")
    print(f"  cached / decoding: {statistics.median(cached[1:]) / statistics.median(decoded):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
