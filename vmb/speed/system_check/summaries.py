"""A cell's figures in a few words (the terminal row and the Markdown "result" column), and the number formats
the report shares.
"""
from __future__ import annotations

from vmb.speed.system_check.plan import LABELS


def number(value: object, digits: int = 1) -> str:
    """A figure in a table: "-" for None, yes/no for a bool, a float with `digits` decimals."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def percent(fraction: object) -> str:
    """A fraction as "12.3 %", "-" where it is not a number."""
    return f"{100 * fraction:.1f} %" if isinstance(fraction, (int, float)) else "-"


def bench_summary(figures: dict) -> str:
    """A bench cell's figures in a few words."""
    parts = []
    if figures.get("clips_per_s") is not None:
        parts.append(f"{figures['clips_per_s']:.1f} clips/s")
    if figures.get("data_wait_fraction") is not None:
        parts.append(f"data wait {percent(figures['data_wait_fraction'])}")
    if figures.get("peak_memory_mib") is not None:
        parts.append(f"peak {figures['peak_memory_mib']:.0f} MiB")
    for key, label in (("gpu_utilization_pct", "GPU util %"), ("host_syncs_per_step", "syncs/step")):
        if key in figures:
            parts.append(f"{label} {number(figures[key])}")
    if figures.get("bench_status") not in (None, "ok"):
        parts.append(str(figures["bench_status"]))
    return ", ".join(parts)


# Each cell's figures in a few words (the terminal row and the Markdown "result" column), one function per cell kind.
def env_summary(figures: dict) -> str:
    verdict = {True: "ok", False: "TOO OLD", None: "?"}[figures.get("driver_ok")]
    return (f"{figures.get('gpus')}; driver {figures.get('driver') or 'not found'} ({verdict}); CUDA runtime "
            f"{figures.get('cuda_runtime')}; {figures.get('usable_cores')} usable cores")


def data_summary(figures: dict) -> str:
    short = f" (shorter than the {figures['span_seconds']:.2f} s clip span)" if figures.get("short_clips") else ""
    return (f"{figures.get('train_videos')} train / {figures.get('val_videos')} val videos, {figures.get('size')}, "
            f"{figures.get('clip_seconds', 0):g} s clips{short}, {figures.get('megabytes')} MB")


def per_core_summary(figures: dict) -> str:
    return ", ".join(f"{LABELS.get(name, name)} {number(m['clips_per_s_per_core'])}"
                     for name, m in figures.get("per_core", {}).items()) + " clips/s per core"


def tests_summary(figures: dict) -> str:
    return ", ".join(f"{count} {key}" for key, count in figures.get("counts", {}).items())


def infer_summary(figures: dict) -> str:
    rows = figures.get("rows", [])
    return f"{sum(r['status'] == 'ok' for r in rows)} of {len(rows)} model x batch x precision cells measured"


def nccl_summary(figures: dict) -> str:
    return ", ".join(f"{r['size_mib']:g} MiB: busbw {r['busbw_gbps']:.1f} GB/s" for r in figures.get("rows", []))


def run_summary(figures: dict) -> str:
    return (f"status {figures.get('status')} on {figures.get('n_devices')} device(s), "
            f"{number(figures.get('train_clips_per_s'))} clips/s, "
            f"data wait {percent(figures.get('data_wait_fraction'))}")


def row(record: dict) -> str:
    """A cell's line in the terminal table (header: ROW_HEADER)."""
    return f"{record['name'][:38]:<38} {record['status'][:34]:<34} {record['seconds']:>6.1f}  {record['summary']}"


ROW_HEADER = f"{'cell':<38} {'status':<34} {'s':>6}  figures"
