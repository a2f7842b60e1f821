"""What tools/bench_infer.py shows and writes: the terminal table, the JSON and CSV files, and the report folder
(report.md, report.html, PNG plots), all from one results document {"header", "interrupted", "cells"}."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable, Iterable

from matplotlib.figure import Figure

from vmb.reporting import Block, ReportError, format_html, format_markdown, save_figure, table_figure
from vmb.reporting import format_text as format_blocks

CSV_FIELDS = ("model", "arch", "batch_size", "runtime", "precision", "status", "note", "iters", "mean_ms", "p50_ms",
              "p95_ms", "p99_ms", "total_s", "clips_per_s", "timer")
LATENCY_PLOT, THROUGHPUT_PLOT, TABLE_PLOT = "latency.png", "throughput.png", "table.png"
DEPLOYMENT_HEADER = ["model", "opset", "check: max abs diff <= bound", "int8"]
RESULT_HEADER = ["model", "batch", "runtime", "precision", "iters", "mean ms", "p50 ms", "p95 ms", "p99 ms",
                 "total s", "clips/s", "status"]


def _ok(cells: list[dict]) -> list[dict]:
    return [c for c in cells if c["status"] == "ok"]


def result_rows(cells: list[dict]) -> list[list[str]]:
    """The results table's rows, one per cell; '-' where a cell was not measured."""
    rows = []
    for c in cells:
        status = c["status"] + (f": {c['note']}" if c["note"] else "")
        cell = [c["model"], str(c["batch_size"]), c["runtime"], c["precision"]]
        if c["status"] != "ok":
            rows.append([*cell, *["-"] * 7, status])
            continue
        rows.append([*cell, str(c["iters"]),
                     *(f"{c[k]:.2f}" for k in ("mean_ms", "p50_ms", "p95_ms", "p99_ms")), f"{c['total_s']:.4g}",
                     f"{c['clips_per_s']:.2f}", status])
    return rows


def deployment_rows(models: dict) -> list[list[str]]:
    """Per model whose ONNX files were made or given: the export's check and the int8 quantization."""
    rows = []
    for name, m in models.items():
        files = m.get("deployment") or {}
        if "onnx" not in files:
            continue
        onnx, int8 = files["onnx"], files.get("int8-cpu") or files.get("int8-tensorrt")
        check = (f"{onnx['max_abs_diff']:.3g} <= {onnx['bound']:.3g}" if "bound" in onnx else
                 f"given: {onnx['file']}")
        rows.append([name, str(onnx.get("opset", "-")), check,
                     f"{int8['activations']} activations; {int8['weights']} weights; "
                     f"{int8['calibration']['clips']} clips" if int8 else "-"])
    return rows


def _setup(h: dict) -> str:
    budget = f"{h['iters']} timed iterations" if h["iters"] is not None else f"{h['seconds']:g} timed seconds"
    numerics = ", ".join(k for k, on in h["numerics"].items() if on) or "default"
    runtimes = ", ".join(f"{name} ({software})" for name, software in h["runtimes"].items())
    calibration = "" if h["calibration"] is None else (
        f" int8: calibrated on {h['calibration']['clips']} {h['calibration']['source']}, seed "
        f"{h['calibration']['seed']}.")
    return (f"{h['device_name']} ({h['device']}); {h['system']}, {h['threads']} CPU threads. "
            f"Per cell: {h['warmup']} warm-up iterations, then {budget}, timed by {h['timer']}"
            f"{' (onnxruntime: time.perf_counter)' if h['timer'] != 'time.perf_counter' else ''}; inference_mode, "
            f"eval mode, random weights, autocast for torch bf16/fp16; "
            f"channels_last_3d {'on' if h['channels_last'] else 'off'}; runtimes: {runtimes}; numerics: "
            f"{numerics}.{calibration}")


def blocks(document: dict, images: Iterable[tuple[str, str]] = ()) -> list[Block]:
    """The report's content (and the plot files, for the report folder)."""
    h, cells = document["header"], document["cells"]
    title = "VMB inference speed" + (" (INTERRUPTED: partial results)" if document["interrupted"] else "")
    models = [[name, m["arch"], m["input"], f"{m['params_m']:.2f}", f"{m['published_params_m']:.2f}"]
              for name, m in h["models"].items()]
    out: list[Block] = [("h", title), ("p", _setup(h)),
                        ("h", "models"), ("table", ["model", "arch", "input (C x T x H x W)", "params M",
                                                    "published params M"], models),
                        ("h", "latency per forward pass and throughput"), ("table", RESULT_HEADER, result_rows(cells))]
    exports = deployment_rows(h["models"])
    if exports:
        out += [("h", "ONNX files (onnxruntime, tensorrt)"), ("table", DEPLOYMENT_HEADER, exports)]
    if document["interrupted"]:
        out.append(("p", "Interrupted (Ctrl-C): only the cells above were measured; rerun for the rest."))
    return out + [("img", file, caption) for file, caption in images]


def format_text(document: dict) -> str:
    """The terminal table."""
    return format_blocks(blocks(document))


def _writing(path: Path, write: Callable[[], None]) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write()
    except OSError as exc:
        raise ReportError(f"cannot write {path} ({exc.strerror or exc}); choose a writable path") from None
    return path


def prepare_outputs(files: Iterable[Path | None], report_dir: Path | None) -> None:
    """Create the folders the outputs go in, before the run, so that a bad path fails at once.

    Raises:
        ReportError: a folder cannot be created.
    """
    for path in [*files, None if report_dir is None else report_dir / "report.md"]:
        if path is not None:
            _writing(path, lambda: None)


def write_json(document: dict, path: Path) -> Path:
    """The whole document, with every cell's latencies."""
    return _writing(path, lambda: path.write_text(json.dumps(document, indent=2) + "\n"))


def write_csv(cells: list[dict], path: Path) -> Path:
    """One row per cell (CSV_FIELDS; empty where a cell was not measured)."""
    def write() -> None:
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, CSV_FIELDS, restval="", extrasaction="ignore")
            writer.writeheader()
            writer.writerows(cells)

    return _writing(path, write)


def plot_latency(cells: list[dict], path: Path) -> None:
    """Per model (one panel each): p50, p95 and p99 latency of each measured batch size x runtime x precision."""
    models = list(dict.fromkeys(c["model"] for c in cells)) or ["(none)"]
    fig = Figure(figsize=(8, 2.8 * len(models)))
    for ax, model in zip(fig.subplots(len(models), 1, squeeze=False)[:, 0], models):
        ok = [c for c in _ok(cells) if c["model"] == model]
        for i, key in enumerate(("p50_ms", "p95_ms", "p99_ms")):
            ax.bar([x + (i - 1) * 0.27 for x in range(len(ok))], [c[key] for c in ok], width=0.27,
                   label=key.split("_")[0], color=f"C{i}")
        ax.set_xticks(range(len(ok)), [f"batch {c['batch_size']}\n{c['runtime']} {c['precision']}" for c in ok],
                      fontsize="small")
        ax.set(title=model, ylabel="latency (ms)")
        if ok:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "nothing measured", ha="center", va="center", transform=ax.transAxes)
        ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path)


def plot_throughput(cells: list[dict], path: Path) -> None:
    """Clips/s against batch size, one line per model x runtime x precision."""
    sizes = sorted({c["batch_size"] for c in cells})
    fig = Figure(figsize=(8, 4))
    ax = fig.subplots()
    for model, runtime, precision in dict.fromkeys((c["model"], c["runtime"], c["precision"]) for c in _ok(cells)):
        line = [c for c in _ok(cells) if (c["model"], c["runtime"], c["precision"]) == (model, runtime, precision)]
        ax.plot([sizes.index(c["batch_size"]) for c in line], [c["clips_per_s"] for c in line], marker="o",
                label=f"{model} {runtime} {precision}")
    ax.set_xticks(range(len(sizes)), [str(s) for s in sizes])
    ax.set(xlabel="batch size", ylabel="throughput (clips/s)", title="throughput per batch size")
    if _ok(cells):
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def write_report(document: dict, out_dir: Path) -> list[Path]:
    """Write report.md, report.html and the plots into `out_dir`; return the files written.

    Raises:
        ReportError: `out_dir` cannot be created or written.
    """
    cells = document["cells"]
    images = [(LATENCY_PLOT, "latency percentiles per model"), (THROUGHPUT_PLOT, "throughput per batch size"),
              (TABLE_PLOT, "comparison table")]

    def write() -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        plot_latency(cells, out_dir / LATENCY_PLOT)
        plot_throughput(cells, out_dir / THROUGHPUT_PLOT)
        save_figure(table_figure(RESULT_HEADER, result_rows(cells), "VMB inference speed"), out_dir / TABLE_PLOT)
        content = blocks(document, images)
        (out_dir / "report.md").write_text(format_markdown(content))
        (out_dir / "report.html").write_text(format_html(content, title="VMB inference speed"))

    _writing(out_dir / "report.md", write)
    return [out_dir / "report.md", out_dir / "report.html", *(out_dir / file for file, _ in images)]
