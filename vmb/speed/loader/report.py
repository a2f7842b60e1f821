"""Text output of the loader study: header, table, goal checks."""
from __future__ import annotations

import statistics

from vmb.speed.loader.pipelines import PIPELINES


def _fmt_rate(value: float | None) -> str:
    return "-" if value is None else (f"{value:.1f}" if value >= 10 else f"{value:.2f}")


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _spread(rates: list[float]) -> str:
    """Spread of the rounds: (max - min) / median."""
    if len(rates) < 2:
        return "-"
    return f"{100 * (max(rates) - min(rates)) / statistics.median(rates):.0f}%"


def format_table(rows: list[dict]) -> str:
    """The terminal table: one block per config, rows pipeline x format."""
    other = {"cpu": "wall", "wall": "cpu"}
    lines = []
    for config in dict.fromkeys(r["config"] for r in rows):
        block = [r for r in rows if r["config"] == config]
        clock = block[0].get("clock", "cpu")
        heads = ("pipeline", "format", "clips/s", "spread", f"{other[clock]} c/s", "CPU%", "x bound src",
                 "x bound fmt", "x PTV fmt", "KB/clip")
        table = [heads]
        for r in block:
            if r.get("error"):
                table.append((PIPELINES[r["pipeline"]], r["format"], f"error: {r['error']}"))
                continue
            share = r.get("cpu_share")
            table.append((PIPELINES[r["pipeline"]], r["format"], _fmt_rate(r.get("clips_per_s")),
                          _spread(r.get("round_rates") or []), _fmt_rate(r.get(f"clips_per_s_{other[clock]}")),
                          "-" if share is None else f"{100 * share:.0f}", _fmt_ratio(r.get("x_bound_source")),
                          _fmt_ratio(r.get("x_bound_same_format")), _fmt_ratio(r.get("x_pytorchvideo_same_format")),
                          f"{r['bytes_per_clip'] / 1e3:.0f}" if r.get("bytes_per_clip") else "-"))
        widths = [max(len(str(row[i])) for row in table if len(row) > 3) for i in range(len(heads))]
        lines.append(f"== {config} ({block[0]['sampling']}) ==")
        for row in table:
            cells = [f"{row[0]:<{widths[0]}}", f"{row[1]:<{widths[1]}}"]
            if len(row) == 3:
                cells.append(row[2])
            else:
                cells += [f"{value:>{width}}" for value, width in zip(row[2:], widths[2:])]
            lines.append("  ".join(cells).rstrip())
        lines.append("")
    return "\n".join(lines)


def format_goals(goals: list[dict]) -> str:
    lines = []
    for g in goals:
        values = ", ".join(f"{k} {_fmt_ratio(v)}" for k, v in g["values"].items())
        lines.append(f"{g['status']:<4}  {g['goal']}: {values}")
    return "\n".join(lines)


def format_header(document: dict) -> str:
    h = document["header"]
    lines = [f"VMB loader study: {h['what']}",
             f"clips:   {h['clips']}",
             f"timing:  {h['timing']} ({h['study_seconds']} s in all)",
             f"spans:   {h['spans']}",
             f"machine: {h['cpu_count']} CPUs, load average {h['load_average_start'][0]:.2f} at start, "
             f"{h['load_average_end'][0]:.2f} at end; " + ", ".join(f"{k} {v}" for k, v in h["versions"].items()),
             f"PyTorchVideo: {h['pytorchvideo']}",
             *([f"augment: {h['augment']}"] if h.get("augment") else []),
             "formats (prepared = " + h["prepared_format"] + "):"]
    for f in document["formats"]:
        gop = "encoder default" if f["gop"] is None else f["gop"]
        bframes = "default" if f["bframes"] is None else f["bframes"]
        tune = f", tune {f['tune']}" if f["tune"] else ""
        lines.append(f"  {f['name']:<17} {f['codec']}, GOP {gop}, B-frames {bframes}{tune}, {f['container']}: "
                     f"{f['bytes_per_clip'] / 1e3:.0f} KB/clip")
    lines.append("columns: clips/s (median of the rounds), spread = (max - min) / median of the rounds, the same "
                 "rate by the other clock, CPU% = CPU time / wall time of the cell (below 100: other processes "
                 "took the core); x bound src = clips/s / PyAV bound on source-like clips, x bound fmt = / PyAV "
                 "bound on the same format, x PTV fmt = / PyTorchVideo on the same format (all within one config)")
    return "\n".join(lines) + "\n"
