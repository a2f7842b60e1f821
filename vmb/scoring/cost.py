"""Cost and energy to target (DAWNBench's cost-to-train; MLPerf Power's energy-to-train), as pure functions.

Cost to target = the scored time to target in hours x the price of one hour of the submission's whole
accelerator system (`tools/score.py --cost-per-hour PRICE`). Energy to target = the mean, over the runs that
reached the target, of their GPUs' energy over run_start..run_stop (result.json `energy_j.total`, NVML). CPU
runs have neither: they say "not measured", never 0.
"""
from __future__ import annotations

import statistics
from typing import Sequence

NOT_MEASURED_CPU = "not measured: CPU run"


def cost_to_target(t_scored_s: float | None, cost_per_hour: float | None,
                   device_unit: str) -> tuple[float | None, str | None]:
    """(cost, None), or (None, why not): no price given, no time, or a CPU run (the price is a GPU system's)."""
    if cost_per_hour is None:
        return None, "no --cost-per-hour given"
    if device_unit != "GPUs":
        return None, NOT_MEASURED_CPU
    if t_scored_s is None:
        return None, "no time to target"
    return t_scored_s / 3600.0 * cost_per_hour, None


def energy_to_target(results: Sequence[dict]) -> tuple[float | None, str | None]:
    """(mean joules of the successful runs, None), or (None, why not: the first run's energy_note)."""
    done = [r for r in results if r.get("status") == "success"]
    if not done:
        return None, "no run reached the target"
    totals = [(r.get("energy_j") or {}).get("total") for r in done]
    if any(t is None for t in totals):
        missing = next(r for r, t in zip(done, totals) if t is None)
        return None, missing.get("energy_note") or "not measured: the run records no energy"
    return statistics.fmean(totals), None
