"""The score's arithmetic, as pure functions.

Per model, `score = t_ref / t_bench * (n_ref / n_bench)` where t is a time to target and n a device count
(GPUs, or CPU processes for CPU runs); per suite, `benchmark_score = (cnn_score + transformer_score) / 2`.
t_bench summarises N runs of one benchmark: with N >= 5 the olympic mean (the fastest and the slowest run
dropped), with fewer the plain mean, flagged provisional. At most one run may miss the target: as in
MLPerf it counts as the slowest run (dropped by the olympic mean, left out of a provisional mean).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Mapping, Sequence

OLYMPIC_MIN_RUNS = 5
MAX_FAILED_RUNS = 1
MODEL_CLASSES = ("cnn", "transformer")


@dataclass(frozen=True)
class TimeSummary:
    """What N runs of one benchmark give: the time that enters the score, and the spread."""

    t_bench: float | None  # seconds; None when the runs give no valid time (see `problem`)
    method: str  # "olympic mean" or "mean"
    provisional: bool  # fewer than OLYMPIC_MIN_RUNS runs
    n_runs: int
    n_failed: int
    min_s: float | None  # spread of the runs that reached the target
    max_s: float | None
    cv: float | None  # coefficient of variation (sample standard deviation / mean); None below 2 runs
    problem: str | None = None


def summarize_times(times: Sequence[float | None]) -> TimeSummary:
    """Summarise the times to target of N runs; None stands for a run that missed the target."""
    done = sorted(t for t in times if t is not None)
    n_runs, n_failed = len(times), len(times) - len(done)
    provisional = n_runs < OLYMPIC_MIN_RUNS
    method = "mean" if provisional else "olympic mean"
    spread = dict(min_s=done[0] if done else None, max_s=done[-1] if done else None,
                  cv=statistics.stdev(done) / statistics.fmean(done) if len(done) >= 2 else None)
    problem = None
    if n_runs == 0:
        problem = "no runs"
    elif n_failed > MAX_FAILED_RUNS:
        problem = f"{n_failed} of {n_runs} runs missed the target (at most {MAX_FAILED_RUNS} may)"
    elif not done:
        problem = "no run reached the target"
    if problem:
        return TimeSummary(None, method, provisional, n_runs, n_failed, problem=problem, **spread)
    # A failed run is the slowest: the olympic mean drops it (with the fastest), a provisional mean leaves it out.
    kept = done if provisional else done[1:len(done) + n_failed - 1]
    return TimeSummary(statistics.fmean(kept), method, provisional, n_runs, n_failed, **spread)


def model_score(t_ref: float, n_ref: int, t_bench: float, n_bench: int) -> float:
    """`t_ref / t_bench * (n_ref / n_bench)`: above 1 is faster per device than the reference."""
    if not (t_ref > 0 and t_bench > 0 and n_ref > 0 and n_bench > 0):
        raise ValueError(f"times and device counts must be positive (t_ref={t_ref}, t_bench={t_bench}, "
                         f"n_ref={n_ref}, n_bench={n_bench})")
    return t_ref / t_bench * (n_ref / n_bench)


def benchmark_score(scores: Mapping[str, float | None]) -> float | None:
    """The mean of the CNN and the transformer score; None unless both are there."""
    halves = [scores.get(name) for name in MODEL_CLASSES]
    if any(s is None or not math.isfinite(s) for s in halves):
        return None
    return sum(halves) / len(halves)


# The unit devices are counted in, plural -> singular: GPUs for CUDA runs, CPU processes otherwise.
DEVICE_UNITS = {"GPUs": "GPU", "CPU processes": "CPU process"}


def device_unit(device_type: str) -> str:
    """The unit (a key of DEVICE_UNITS) devices are counted in: GPUs for CUDA runs, CPU processes otherwise."""
    return "GPUs" if device_type == "cuda" else "CPU processes"
