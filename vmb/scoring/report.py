"""What the scorer shows: the terminal table, the JSON document, and the report folder (report.md,
report.html, PNG plots).

All three are rendered from one list of blocks (headings, paragraphs, tables, lists, images), so they
always say the same thing. Strings that come from a submission are escaped in HTML and Markdown.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from matplotlib.figure import Figure

from vmb import rules
from vmb.record.runlog import find
from vmb.record.schema import RUN_START
from vmb.scoring.score import DEVICE_UNITS, OLYMPIC_MIN_RUNS
from vmb.reporting import system_line
from vmb.scoring.assess import Assessment, BenchmarkResult
from vmb.scoring.validate import Run
from vmb.reporting import Block, ReportError, format_html, format_markdown, save_figure
from vmb.reporting import format_text as format_text_blocks

TOP1_PLOT, TIMES_PLOT, SCORES_PLOT = "top1_vs_time.png", "time_to_target.png", "scores.png"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} s" if value < 100 else f"{value:.1f} s"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _devices(n: int, unit: str) -> str:
    return f"{n} {DEVICE_UNITS.get(unit, unit) if n == 1 else unit}"


def _systems(a: Assessment) -> dict[str, list[Path]]:
    """Distinct system lines, each with the runs that used it, in order of appearance."""
    systems: dict[str, list[Path]] = {}
    for check in a.runs:
        if check.run is not None:
            systems.setdefault(system_line(check.run.system), []).append(check.path)
    return systems


def _system_ids(a: Assessment) -> dict[Path, str]:
    return {path: f"S{i}" for i, paths in enumerate(_systems(a).values(), start=1) for path in paths}


def _method(b: BenchmarkResult) -> str:
    if not b.valid:
        return "invalid (see problems)"
    return f"{b.summary.method} (provisional)" if b.summary.provisional else b.summary.method


def _t_bench(b: BenchmarkResult) -> float | None:
    """The benchmark's time, shown only when all its runs and checks are valid."""
    return b.summary.t_bench if b.valid else None


def _score(score: float | None, division: str | None) -> str:
    """A score, labelled when it is an open-division one."""
    return f"{_number(score)} (open division)" if score is not None and division == rules.OPEN else _number(score)


def _convergence_cell(b: BenchmarkResult) -> str:
    c = b.convergence
    if c is None:
        return "not checked" if b.notes else "-"
    p = "std 0" if c.p_value is None else f"p {c.p_value:.3g}"
    if not c.faster:
        return f"passed ({p})"
    return f"normalised x{b.time_factor:.3f} ({p})" if b.normalised else f"faster, reported ({p})"


def _convergence_lines(a: Assessment) -> list[str]:
    """Per benchmark tested: the statistics, the verdict, and what it does to the score."""
    lines = []
    for name, b in a.benchmarks.items():
        if b.convergence is None:
            continue
        line = f"{name}: {b.convergence.describe()}"
        if b.normalised:
            line += (f"; closed division: t_bench {_seconds(b.summary.t_bench)} normalised to "
                     f"{_seconds(b.t_scored)} (x{b.time_factor:.3f}) for the score")
        elif b.convergence.faster:
            line += "; open division: reported, not normalised"
        lines.append(line)
    return lines


def _runs_table(a: Assessment) -> Block:
    ids = _system_ids(a)
    rows = []
    for check in a.runs:
        run = check.run
        verdict = "ok" if check.valid else "INVALID"
        if run is None:
            rows.append([str(check.path), "?", "?", "-", "-", "-", "-", "-", verdict])
            continue
        r = run.result
        status = r["status"] if run.success else f"{r['status']} (best {r['best_top1']:.2f}% < {r['target_top1']}%)"
        rows.append([str(check.path), run.benchmark, status, _seconds(r["time_to_target_s"]),
                     _devices(r["n_devices"], run.device_unit), str(r["seed"]), str(r["division"]), ids[check.path],
                     verdict])
    return ("table", ["run", "benchmark", "status", "time to target", "devices", "seed", "division", "system",
                      "check"], rows)


def _cost_cell(b: BenchmarkResult) -> str:
    return f"{b.cost:.2f}" if b.cost is not None else (b.cost_note or "-")


def _energy_cell(b: BenchmarkResult) -> str:
    if b.energy_j is None:
        return "not measured" if (b.energy_note or "").startswith("not measured") else (b.energy_note or "-")
    return f"{b.energy_j / 3.6e6:.3f} kWh"


def _benchmarks_table(a: Assessment) -> Block:
    """One row per benchmark; cost and energy to target as two more columns when a price was given or any
    benchmark recorded energy."""
    extra = a.cost_per_hour is not None or any(b.energy_j is not None for b in a.benchmarks.values())
    rows = []
    for name, b in a.benchmarks.items():
        s, ref = b.summary, b.reference
        rows.append([name, b.benchmark.model_class, str(s.n_runs), str(s.n_failed), _seconds(_t_bench(b)), _method(b),
                     _seconds(s.min_s), _seconds(s.max_s), "-" if s.cv is None else f"{100 * s.cv:.1f}%",
                     _devices(b.n_devices, b.device_unit), _seconds(ref.t_ref_s) if ref else "-",
                     _devices(ref.n_devices_ref, ref.device_unit) if ref else "-", _convergence_cell(b),
                     *([_cost_cell(b), _energy_cell(b)] if extra else []), _score(b.score, b.division)])
    cost_head = f"cost to target ({a.cost_per_hour:g}/h)" if a.cost_per_hour is not None else "cost to target"
    return ("table", ["benchmark", "class", "runs", "failed", "t_bench", "method", "min", "max", "CV", "devices",
                      "t_ref", "ref devices", "convergence", *([cost_head, "energy to target"] if extra else []),
                      "score"], rows)


def _suite_lines(a: Assessment) -> list[str]:
    lines = []
    for suite in a.suites.values():
        if suite.benchmark_score is not None:
            halves = " + ".join(f"{cls} {_number(score)}" for cls, score in suite.scores.items())
            label = " (open division)" if suite.division == rules.OPEN else ""
            lines.append(f"suite {suite.suite}: benchmark score {suite.benchmark_score:.3f} = ({halves}) / 2{label}")
        else:
            lines.append(f"suite {suite.suite}: no benchmark score: {suite.note}")
    return lines


def verdict(a: Assessment) -> str:
    """VALID or INVALID, which benchmarks are open-division ones, and why a valid result is only provisional."""
    if not a.valid:
        return f"INVALID: {len(a.all_reasons())} problem(s)"
    parts = []
    open_division = [name for name, b in a.benchmarks.items() if b.division == rules.OPEN]
    if open_division:
        parts.append(f"open division: {', '.join(open_division)}")
    provisional = [name for name, b in a.benchmarks.items() if b.summary.provisional]
    if provisional:
        parts.append(f"provisional: fewer than {OLYMPIC_MIN_RUNS} runs of {', '.join(provisional)}")
    return "VALID" + (f", {'; '.join(parts)}" if parts else "")


def blocks(a: Assessment, images: Iterable[tuple[str, str]] = ()) -> list[Block]:
    """The report's content, from the assessment (and the plot files, for the report folder)."""
    reference = f"reference {a.reference.path}" if a.reference else "no reference"
    out: list[Block] = [("h", f"VMB score: {len(a.runs)} run(s), {reference}"), ("p", verdict(a)), ("h", "systems")]
    out.append(("list", [f"S{i} {line} [{len(paths)} run(s)]" for i, (line, paths) in
                         enumerate(_systems(a).items(), start=1)] or ["none readable"]))
    out += [("h", "runs"), _runs_table(a)]
    if a.benchmarks:
        out += [("h", "benchmarks"), _benchmarks_table(a), ("list", _suite_lines(a))]
    convergence = _convergence_lines(a) + a.all_notes()
    if convergence:
        out += [("h", "convergence (epochs to target against the reference, one-sided t-test at the version's p)"),
                ("list", convergence)]
    deviations = a.all_deviations()
    if deviations:
        out += [("h", "open division: deviations from the closed rules"), ("list", deviations)]
    if a.reference is None:
        out.append(("p", "No reference: times only. To score, pass --reference FILE (see references/); make one "
                         "from valid runs with: python tools/score.py --make-reference RUNS -o references/NAME.json"))
    problems = a.all_reasons()
    if problems:
        out += [("h", "problems"), ("list", problems)]
    out += [("img", file, caption) for file, caption in images]
    return out


# ---------------------------------------------------------------------------------------------- renderers

def format_text(a: Assessment) -> str:
    """The terminal table."""
    return format_text_blocks(blocks(a)) + "\n\n" + verdict(a)


def to_json(a: Assessment) -> dict[str, Any]:
    """The assessment as JSON data (`tools/score.py --json`)."""
    ids = _system_ids(a)
    runs = []
    for check in a.runs:
        entry: dict[str, Any] = {"run": str(check.path), "valid": check.valid, "reasons": check.reasons,
                                 "deviations": check.deviations}
        if check.run is not None:
            r = check.run.result
            entry.update(benchmark=r["benchmark"], status=r["status"], time_to_target_s=r["time_to_target_s"],
                         n_devices=r["n_devices"], device_unit=check.run.device_unit, seed=r["seed"],
                         best_top1=r["best_top1"], target_top1=r["target_top1"],
                         dataset_fingerprint=r["dataset_fingerprint"], system=ids[check.path],
                         division=r["division"], epochs=r["epochs"], source_digest=r["source_digest"],
                         git_commit=r["git_commit"], git_dirty=r["git_dirty"])
        runs.append(entry)
    benchmarks = {}
    for name, b in a.benchmarks.items():
        s, ref, c = b.summary, b.reference, b.convergence
        convergence = None if c is None else {
            "reference_mean_epochs": c.reference_mean, "reference_std_epochs": c.reference_std,
            "n_reference": c.n_reference, "n_reference_runs": c.n_reference_runs,
            "mean_epochs": c.submission_mean, "n_runs": c.n_submission, "p_value": c.p_value,
            "p_threshold": c.p_threshold, "faster": c.faster, "factor": c.factor, "normalised": b.normalised}
        benchmarks[name] = {
            "model_class": b.benchmark.model_class, "suite": b.benchmark.suite, "valid": b.valid,
            "reasons": b.reasons, "runs": s.n_runs, "failed": s.n_failed, "t_bench_s": _t_bench(b),
            "method": s.method, "provisional": s.provisional, "min_s": s.min_s, "max_s": s.max_s, "cv": s.cv,
            "n_devices": b.n_devices, "device_unit": b.device_unit,
            "t_ref_s": ref.t_ref_s if ref else None, "n_devices_ref": ref.n_devices_ref if ref else None,
            "division": b.division, "deviations": b.deviations, "notes": b.notes, "convergence": convergence,
            "time_factor": b.time_factor, "t_scored_s": b.t_scored if b.valid else None, "score": b.score,
            "cost": b.cost, "cost_note": b.cost_note, "energy_j": b.energy_j, "energy_note": b.energy_note}
    suites = {name: {"benchmark_score": s.benchmark_score, "scores": s.scores, "benchmarks": s.benchmarks,
                      "note": s.note, "division": s.division} for name, s in a.suites.items()}
    systems = [{"id": f"S{i}", "description": line, "runs": [str(p) for p in paths]}
               for i, (line, paths) in enumerate(_systems(a).items(), start=1)]
    return {"valid": a.valid, "verdict": verdict(a), "reference": str(a.reference.path) if a.reference else None,
            "cost_per_hour": a.cost_per_hour,
            "reasons": a.all_reasons(), "deviations": a.all_deviations(), "systems": systems, "runs": runs,
            "benchmarks": benchmarks, "suites": suites}


# ---------------------------------------------------------------------------------------------- plots

def _eval_curve(run: Run) -> tuple[list[float], list[float]]:
    """(seconds since run_start, top-1) of every evaluation in the log."""
    starts = find(run.events, RUN_START)
    if not starts:
        return [], []
    points = [((e.time_ms - starts[0].time_ms) / 1000.0, e.value) for e in find(run.events, "eval_accuracy")
              if isinstance(e.value, (int, float))]
    return [t for t, _ in points], [v for _, v in points]


def _time_unit(max_seconds: float) -> tuple[float, str]:
    if max_seconds > 7200:
        return 3600.0, "h"
    return (60.0, "min") if max_seconds > 300 else (1.0, "s")


def plot_top1(a: Assessment, path: Path) -> None:
    """Top-1 against wall-clock time since run_start, one panel per benchmark, with the target."""
    names = list(a.benchmarks) or ["(none)"]
    fig = Figure(figsize=(8, 3.2 * len(names)))
    axes = fig.subplots(len(names), 1, squeeze=False)[:, 0]
    for ax, name in zip(axes, names):
        runs = [c.run for c in a.benchmarks[name].runs] if name in a.benchmarks else []
        curves = [(run, *_eval_curve(run)) for run in runs]
        scale, unit = _time_unit(max((t[-1] for _, t, _ in curves if t), default=0.0))
        for run, times, top1 in curves:
            ax.plot([t / scale for t in times], top1, marker=".", linestyle="-" if run.success else "--",
                    label=f"{run.path.name} (seed {run.result['seed']})")
        if runs:
            ax.axhline(runs[0].result["target_top1"], color="k", linestyle=":", label="target")
            ax.legend(fontsize="small", loc="lower right")
        ax.set(title=name, xlabel=f"wall-clock time since run_start ({unit})", ylabel="val top-1 (%)")
        ax.grid(alpha=0.3)
    save_figure(fig, path)


def plot_times(a: Assessment, path: Path) -> None:
    """Time to target of every run (a cross: missed the target), the benchmark's time and the reference's."""
    names = list(a.benchmarks)
    fig = Figure(figsize=(10, 1.4 + 0.8 * max(1, len(names))))
    ax = fig.subplots()
    all_times = [c.run.result["time_to_target_s"] for b in a.benchmarks.values() for c in b.runs]
    scale, unit = _time_unit(max(all_times, default=0.0))
    for y, name in enumerate(names):
        b = a.benchmarks[name]
        for check in b.runs:
            run = check.run
            ax.plot(run.result["time_to_target_s"] / scale, y, "o" if run.success else "x", color="C0")
        if _t_bench(b) is not None:
            ax.plot([_t_bench(b) / scale] * 2, [y - 0.3, y + 0.3], color="C1", linewidth=2)
        if b.reference is not None:
            ax.plot([b.reference.t_ref_s / scale] * 2, [y - 0.3, y + 0.3], color="k", linestyle="--")
    ax.plot([], [], "o", color="C0", label="run")
    ax.plot([], [], "x", color="C0", label="run that missed the target (its stop time)")
    ax.plot([], [], color="C1", linewidth=2, label="t_bench")
    ax.plot([], [], color="k", linestyle="--", label="t_ref")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(-0.7, max(0.7, len(names) - 0.3))
    ax.set(xlabel=f"time to target ({unit})", title="time to target per run")
    ax.grid(axis="x", alpha=0.3)
    save_figure(fig, path)


def plot_scores(a: Assessment, path: Path) -> None:
    """Per-model scores and benchmark scores against the reference (1.0)."""
    labels, values = [], []
    for name, b in a.benchmarks.items():
        if b.score is not None:
            labels.append(f"{name} (open)" if b.division == rules.OPEN else name)
            values.append(b.score)
    for suite in a.suites.values():
        if suite.benchmark_score is not None:
            labels.append(f"{suite.suite} benchmark{' (open)' if suite.division == rules.OPEN else ''}")
            values.append(suite.benchmark_score)
    fig = Figure(figsize=(8, 3.5))
    ax = fig.subplots()
    ax.bar(labels, values, color="C2")
    ax.axhline(1.0, color="k", linestyle="--", label="reference")
    ax.set(ylabel="score (reference = 1)", title=f"scores against {a.reference.path.name if a.reference else '-'}")
    ax.legend()
    save_figure(fig, path)


def write_report(a: Assessment, out_dir: Path) -> list[Path]:
    """Write report.md, report.html and the PNG plots into `out_dir`; return the files written.

    Raises:
        ReportError: `out_dir` cannot be created or written.
    """
    try:
        return _write_report(a, out_dir)
    except OSError as exc:
        raise ReportError(f"cannot write the report to {out_dir} ({exc.strerror or exc})") from None


def _write_report(a: Assessment, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    images = [(TOP1_PLOT, "validation top-1 against wall-clock time, with the target"),
              (TIMES_PLOT, "time to target per run")]
    plot_top1(a, out_dir / TOP1_PLOT)
    plot_times(a, out_dir / TIMES_PLOT)
    if any(b.score is not None for b in a.benchmarks.values()):
        images.append((SCORES_PLOT, "scores against the reference"))
        plot_scores(a, out_dir / SCORES_PLOT)
    content = blocks(a, images)
    (out_dir / "report.md").write_text(format_markdown(content))
    (out_dir / "report.html").write_text(format_html(content))
    return [out_dir / "report.md", out_dir / "report.html", *(out_dir / file for file, _ in images)]
