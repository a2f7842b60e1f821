"""Latency statistics of a timed loop: percentiles, mean, total and throughput of per-iteration times."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

PERCENTILES = (50, 95, 99)


def percentile(samples: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0 to 100) of `samples`, interpolated linearly between the two nearest ranks
    (numpy's default method): rank (n - 1) * q / 100 of the sorted samples."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class LatencyStats:
    """Summary of `iters` timed iterations of `batch_size` clips each; latencies in ms."""

    iters: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    total_s: float  # sum of the timed iterations (warm-up excluded)
    clips_per_s: float  # batch_size * iters / total_s


def summarize(latencies_ms: Sequence[float], batch_size: int) -> LatencyStats:
    """Statistics of per-iteration latencies (ms) of batches of `batch_size` clips."""
    if not latencies_ms:
        raise ValueError("no timed iterations to summarize")
    total_s = sum(latencies_ms) / 1000
    p50, p95, p99 = (percentile(latencies_ms, q) for q in PERCENTILES)
    return LatencyStats(iters=len(latencies_ms), mean_ms=sum(latencies_ms) / len(latencies_ms), p50_ms=p50,
                        p95_ms=p95, p99_ms=p99, total_s=total_s,
                        clips_per_s=batch_size * len(latencies_ms) / total_s)
