"""What `tools/bench_train.py` reports: the statistics of the timed iterations (`seconds_stats`), the VMB/bare
overhead comparison's verdict (`overhead_summary`, goal: <= GOAL_OVERHEAD), the peak memory, the JSON result
(`make_result`) and its terminal table (`format_result`). The measurements are vmb.speed.train_bench's.
"""
from __future__ import annotations

import resource
import statistics
import sys
from typing import Sequence

import torch

from vmb.reporting import system_line
from vmb.speed.latency import percentile
from vmb.speed.train_bench import SYNC_COUNT_ITERS, IterTimes, overhead_clock

GOAL_OVERHEAD = 1.03  # VMB's step may cost at most 3 % more than the bare loop's


def seconds_stats(values: Sequence[float]) -> dict[str, float]:
    """Mean, p50, p95, min and max of `values` (seconds)."""
    return {"mean": statistics.fmean(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "min": min(values), "max": max(values)}


def overhead_summary(rounds: list[tuple[float, float]], steps: int, device: torch.device) -> dict | None:
    """The VMB/bare ratio (median of the rounds') with its spread, and each loop's median seconds per step."""
    if not rounds:
        return None
    ratios = [vmb / bare for bare, vmb in rounds]
    ratio = statistics.median(ratios)
    return {"ratio": ratio, "ratio_min": min(ratios), "ratio_max": max(ratios), "round_ratios": ratios,
            "rounds": len(rounds), "steps_per_round": steps, "clock": overhead_clock(device)[1],
            "bare_s_step": statistics.median(b for b, _ in rounds) / steps,
            "vmb_s_step": statistics.median(v for _, v in rounds) / steps,
            "goal": GOAL_OVERHEAD, "meets_goal": ratio <= GOAL_OVERHEAD}


def peak_memory(device: torch.device) -> tuple[float, str]:
    """(MiB, what was measured): CUDA's peak allocated memory, or on the CPU the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "CUDA max_memory_allocated since the warm-up"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10), "peak RSS of this process (CPU)"


def make_result(result: dict, times: IterTimes, rounds: list[tuple[float, float]], round_steps: int,
                device: torch.device) -> dict:
    """Fill `result` with the statistics of the timed iterations and the comparison (what was measured)."""
    n = times.count()
    data, compute, total = times.data[:n], times.compute[:n], times.total[:n]
    memory_mib, memory_kind = peak_memory(device)
    result.update(
        measured_iters=n,
        s_iter=seconds_stats(total) if n else None, data_s=seconds_stats(data) if n else None,
        compute_s=seconds_stats(compute) if n else None,
        clips_per_s=result["batch_size"] / statistics.fmean(total) if n else None,
        peak_memory_mib=memory_mib, peak_memory=memory_kind,
        gpu_utilization_pct=times.gpu_utilization_pct, host_syncs_per_step=times.host_syncs_per_step,
        overhead=overhead_summary(rounds, round_steps, device),
        per_iteration={"data_s": data, "compute_s": compute, "total_s": total})
    return result


def format_result(r: dict) -> str:
    """The terminal table."""
    share = f" (TRAIN.BATCH_SIZE {r['global_batch_size']} over {r['processes']})" if r["processes"] > 1 else ""
    lines = [f"train bench: {r['model']} ({r['config'] or 'zoo'}), {r['device']}, {r['precision']}, batch "
             f"{r['batch_size']}{share}, clip {'x'.join(map(str, r['clip']))}, {r['input']} data"
             + (f" ({r['num_workers']} loader workers)" if r["input"] == "real" else ""),
             f"system: {system_line(r['system'])}; {r['threads']} torch threads",
             f"iterations: {r['iters']}, first {r['warmup']} left out, {r['measured_iters']} measured"]
    if r["s_iter"]:
        lines.append(f"{'seconds':<22}{'mean':>9}{'p50':>9}{'p95':>9}")
        for label, key in (("per iteration", "s_iter"), ("  data (host wait)", "data_s"), ("  compute", "compute_s")):
            s = r[key]
            lines.append(f"{label:<22}{s['mean']:>9.4f}{s['p50']:>9.4f}{s['p95']:>9.4f}")
        lines.append(f"clips/s               {r['clips_per_s']:.2f}")
    lines.append(f"peak memory           {r['peak_memory_mib']:.0f} MiB ({r['peak_memory']})")
    if r["device"].startswith("cuda"):
        utilization, syncs = r["gpu_utilization_pct"], r["host_syncs_per_step"]
        lines.append(f"GPU utilisation       {'not measured' if utilization is None else f'{utilization:.0f} %'} "
                     "(NVML, timed iterations)")
        lines.append(f"host syncs per step   {'not measured' if syncs is None else f'{syncs:g}'} "
                     f"(torch's sync debug mode, {SYNC_COUNT_ITERS} iterations after the timed ones)")
    o = r["overhead"]
    if o:
        verdict = "meets" if o["meets_goal"] else "misses"
        lines.append(f"VMB step / bare loop  {o['ratio']:.3f} (rounds {o['ratio_min']:.3f}-{o['ratio_max']:.3f}, "
                     f"{o['rounds']} x {o['steps_per_round']} steps, {o['clock']}; bare {o['bare_s_step']:.4f} "
                     f"s/step, VMB {o['vmb_s_step']:.4f} s/step; {verdict} the goal <= {o['goal']:.2f})")
    if r["status"] != "ok":
        lines.append(f"status: {r['status']}")
    return "\n".join(lines)
