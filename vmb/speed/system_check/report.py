"""The check's files: DIR/system_check.json (`Report.document`: {"version", "started", "budget_min", "elapsed_s",
"complete", "interrupted", "plan", "environment", "cells", "sizing"}) and DIR/system_check.md (`markdown`:
environment, one table per cell group, the sizing, the cells not run and the failures), both rewritten after every
cell (`Report.write`).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from vmb.speed.system_check.plan import G_DRY, G_ENV, G_INFER, G_MULTI, G_TRAIN, GROUPS, LABELS
from vmb.speed.system_check.sizing import sizing
from vmb.speed.system_check.summaries import number, percent

VERSION = 1
JSON_NAME, MARKDOWN_NAME = "system_check.json", "system_check.md"


@dataclass
class Report:
    """The check's state, written as DIR/system_check.json and DIR/system_check.md (`write`, after every cell)."""

    out: Path
    budget_min: float
    started: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    began: float = field(default_factory=time.monotonic)
    environment: dict = field(default_factory=dict)
    plan: dict | None = None
    cells: list[dict] = field(default_factory=list)
    complete: bool = False
    interrupted: bool = False

    def document(self) -> dict:
        """The JSON document: {"version": 1, "started", "budget_min", "environment", "cells", "sizing", ...}."""
        return {"version": VERSION, "started": self.started, "budget_min": self.budget_min,
                "elapsed_s": round(time.monotonic() - self.began, 1), "complete": self.complete,
                "interrupted": self.interrupted, "plan": self.plan, "environment": self.environment,
                "cells": self.cells, "sizing": sizing(self.cells, self.environment)}

    def write(self) -> None:
        """Rewrite both files (each replaced atomically: a reader never sees half a file)."""
        document = self.document()
        for name, text in ((JSON_NAME, json.dumps(document, indent=1) + "\n"), (MARKDOWN_NAME, markdown(document))):
            tmp = self.out / f".{name}.tmp"
            tmp.write_text(text)
            os.replace(tmp, self.out / name)


def _cell_table(cells: list[dict], columns: Sequence[tuple[str, Callable[[dict], str]]]) -> tuple:
    """A table block: one row per cell (name, status, seconds, then `columns`: title and getter on the record)."""
    header = ["cell", "status", "s", *(title for title, _ in columns)]
    rows = [[c["name"], c["status"], f"{c['seconds']:.1f}", *(get(c) for _, get in columns)] for c in cells]
    return ("table", header, rows)


def _figure(name: str, form: Callable[[object], str] = number) -> Callable[[dict], str]:
    return lambda cell: form(cell["figures"].get(name))


BENCH_COLUMNS = (("batch", _figure("batch_size")), ("precision", _figure("precision")),
                 ("clips/s", _figure("clips_per_s")), ("data wait", _figure("data_wait_fraction", percent)),
                 ("peak MiB", _figure("peak_memory_mib", lambda v: number(v, 0))),
                 ("GPU util %", _figure("gpu_utilization_pct")), ("host syncs/step", _figure("host_syncs_per_step")))
DRY_COLUMNS = (("backend", _figure("backend")),
               ("workers", lambda cell: number(cell["figures"].get("num_workers", cell["figures"].get("workers")))),
               *BENCH_COLUMNS)
SUMMARY_COLUMN = (("result", lambda cell: cell.get("summary", "")),)


def _group_blocks(group: str, cells: list[dict]) -> list[tuple]:
    """A group's heading, its table of cells, and the detail tables of its cells' figures."""
    columns = {G_DRY: DRY_COLUMNS, G_TRAIN: BENCH_COLUMNS}.get(group, SUMMARY_COLUMN)
    blocks: list[tuple] = [("h", group), _cell_table(cells, columns)]
    for cell in cells:
        figures = cell["figures"]
        listed = [t for t in figures.get("tests", []) if t["outcome"] != "passed"]
        if listed:
            blocks.append(("table", ["test", "outcome", "first line"],
                           [[t["test"], t["outcome"], t["message"]] for t in listed]))
        if group == G_INFER and figures.get("rows"):
            blocks.append(("table", ["model", "batch", "precision", "status", "p50 ms", "p95 ms", "clips/s"],
                           [[r["model"], number(r["batch_size"]), r["precision"],
                             r["status"] + (f" ({r['note']})" if r.get("note") else ""), number(r.get("p50_ms"), 2),
                             number(r.get("p95_ms"), 2), number(r.get("clips_per_s"))] for r in figures["rows"]]))
        if group == G_MULTI and figures.get("rows"):
            blocks.append(("table", ["all-reduce MiB", "time ms", "algbw GB/s", "busbw GB/s"],
                           [[number(r["size_mib"], 0), number(r["time_ms"], 3), number(r["algbw_gbps"], 2),
                             number(r["busbw_gbps"], 2)] for r in figures["rows"]]))
        if figures.get("per_core"):
            blocks.append(("table", ["model", "clips/s per core (CPU time)", "clips/s (wall)", "clips", "error"],
                           [[LABELS.get(name, name), number(m["clips_per_s_per_core"]),
                             number(m["clips_per_s_wall"]), number(m["clips"]), m["error"] or ""]
                            for name, m in figures["per_core"].items()]))
    return blocks


def _environment_rows(env: dict) -> list[list[str]]:
    gpus = "; ".join(f"{g['index']}: {g['name']}, {g['memory_gib']} GiB" + (f", {g['capability']}" if "capability" in g
                                                                            else "") for g in env.get("gpus", []))
    versions = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items())
    rows = [("GPUs", gpus or "none"), ("CUDA devices (torch)", env.get("cuda_devices")),
            ("driver", f"{env.get('driver_version') or 'not found'} ({env.get('driver_source') or '-'})"),
            ("CUDA runtime (torch.version.cuda)", env.get("cuda_runtime")),
            ("minimum driver for it", env.get("min_driver")),
            ("torch CUDA arch list", " ".join(env.get("cuda_arch_list") or []) or "-"),
            ("NCCL", env.get("nccl_version")), ("cuDNN", env.get("cudnn_version")),
            ("native bf16", env.get("bf16_native")), ("NVML energy counter readable", env.get("nvml_energy_readable")),
            ("CPU", f"{env.get('cpu_model')}: {env.get('cpu_count')} cores, {env.get('usable_cores')} usable"),
            ("memory", env.get("memory")), ("OS", env.get("os")), ("Python", env.get("python")),
            ("libraries", versions)]
    return [[name, number(value)] for name, value in rows]


def markdown(document: dict) -> str:
    """The report: environment, one table per cell group, the sizing, the cells not run and the failures."""
    from vmb.reporting import format_markdown

    env, cells = document["environment"], document["cells"]
    state = "complete" if document["complete"] else "interrupted (Ctrl-C)" if document["interrupted"] else \
        "in progress"
    blocks: list[tuple] = [
        ("h", "VMB system check"),
        ("p", (f"Started {document['started']}, budget {document['budget_min']:g} min, "
               f"{document['elapsed_s']:.0f} s so far, {state}.")),
    ]
    if env:
        blocks += [("h", G_ENV), ("p", f"Driver: {env.get('driver_verdict')}."),
                   ("table", ["item", "value"], _environment_rows(env))]
    for group in GROUPS[1:]:
        members = [c for c in cells if c["group"] == group]
        if members:
            blocks += _group_blocks(group, members)
    size = document["sizing"]
    blocks += [("h", "Sizing: CPU cores per GPU for a data wait below 10 %"), ("p", size["formula"] + "."),
               ("table", ["model", "GPU clips/s", "from", "clips/s per core", "cores per GPU"],
                [[m["label"], number(m["gpu_clips_per_s"]), m["gpu_source"] or "-",
                  number(m["clips_per_s_per_core"]), m["verdict"]] for m in size["models"].values()]),
               ("p", size["line"])]
    not_run = [f"{c['name']}: {c['status'][len('not run: '):]}" for c in cells if c["status"].startswith("not run")]
    if not_run:
        blocks += [("h", "Cells not run"), ("list", not_run)]
    failures = [c for c in cells if c["status"] in ("failed", "timeout")]
    if failures:
        blocks.append(("h", "Failures and timeouts (the last lines of their output; the whole of it in logs/)"))
        for cell in failures:
            blocks += [("p", f"{cell['name']} ({cell['status']}): {cell['figures'].get('command', '')}"),
                       ("list", cell["error"] or ["(no output)"])]
    return format_markdown(blocks)
