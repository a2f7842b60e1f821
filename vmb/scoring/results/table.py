"""The results table's content: its columns, one row per ranked suite of a valid submission (ranked by benchmark
score), and the "Not ranked" entries. Cells hold plain text (the page escapes it, the CSV guards it).

Times to target are each benchmark's t_bench (the olympic mean of its runs, or the plain mean of fewer than five,
noted "provisional"), energy and cost to target as vmb.scoring.cost defines them; "-" where there is none (energy not
measured, no --cost-per-hour, a CPU run's cost).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from vmb.reporting import system_line
from vmb.scoring.assess import BenchmarkResult, SuiteResult
from vmb.scoring.results.submission import Submission
from vmb.scoring.score import MODEL_CLASSES

NONE = "-"
MAX_CELL = 200  # characters of a submitted string shown in a cell; longer ones are cut with "..."
_LABELS = {"cnn": "CNN", "transformer": "transformer"}


@dataclass(frozen=True)
class Cell:
    text: str  # what the table shows; NONE for nothing
    sort: float | None = None  # numeric columns: the value sorted by (None, shown NONE, sorts last)
    note: str = ""  # shown after the text on the page, left out of the CSV (e.g. "provisional")
    link: str | None = None  # a URL relative to the site's index.html


@dataclass(frozen=True)
class Column:
    name: str
    numeric: bool
    title: str  # what the column holds (the header's tooltip)


@dataclass(frozen=True)
class NotRanked:
    """A submission, or a suite of one, that is not ranked, and why (one line each)."""

    name: str
    link: str | None
    reasons: list[str]


def clip(text: str, limit: int = MAX_CELL) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def columns(cost_per_hour: float | None) -> list[Column]:
    price = f" at {cost_per_hour:g}/h" if cost_per_hour is not None else ""
    per_class = [
        *(Column(f"{_LABELS[c]} score", True, f"t_ref / t_bench x (n_ref / n_bench) of the {c} benchmark")
          for c in MODEL_CLASSES),
        Column("benchmark score", True, "(CNN score + transformer score) / 2: the ranking"),
        *(Column(f"{_LABELS[c]} time to target (s)", True, f"t_bench of the {c} benchmark: the olympic mean of its "
                 "runs (the mean of fewer than 5: provisional)") for c in MODEL_CLASSES),
        *(Column(f"{_LABELS[c]} energy to target (kWh)", True, f"mean GPU energy of the {c} benchmark's runs that "
                 "reached the target (where measured)") for c in MODEL_CLASSES),
        *(Column(f"{_LABELS[c]} cost to target{price}", True, f"scored time to target of the {c} benchmark in hours "
                 "x --cost-per-hour (GPU runs)") for c in MODEL_CLASSES),
    ]
    return [Column("#", True, "rank by benchmark score"), Column("submission", False, "its report"),
            Column("suite", False, "the benchmarks scored"),
            Column("system", False, "system.json of its runs: accelerators, CPU, memory, framework"),
            Column("accelerator", False, "accelerator_model_name in system.json"),
            Column("devices", True, "GPUs (CPU processes for CPU runs) per benchmark"),
            Column("division", False, "closed, or open (deviations listed in its report)"), *per_class]


def _distinct(values: Sequence[str]) -> str:
    return clip(" | ".join(dict.fromkeys(values))) or NONE


def _number(value: float | None, digits: int, note: str = "") -> Cell:
    return Cell(NONE) if value is None else Cell(f"{value:.{digits}f}", value, note)


def _row(rank: int, submission: Submission, suite: SuiteResult, link: str | None) -> list[Cell]:
    a = submission.assessment
    results: dict[str, BenchmarkResult | None] = {c: a.benchmarks[name] if name else None
                                                  for c, name in suite.benchmarks.items()}
    present = [b for b in results.values() if b is not None]
    runs = [check.run for b in present for check in b.runs]
    devices = list(dict.fromkeys(b.n_devices for b in present))

    def per_class(cell) -> list[Cell]:
        return [cell(results[c]) if results.get(c) else Cell(NONE) for c in MODEL_CLASSES]

    return [Cell(str(rank), rank), Cell(clip(submission.name), link=link),
            Cell(f"{suite.suite} ({', '.join(b.benchmark.name for b in present)})"),
            Cell(_distinct([system_line(run.system) for run in runs])),
            Cell(_distinct([str(run.system.get("accelerator_model_name", "?")) for run in runs])),
            Cell(" / ".join(map(str, devices)), max(devices)), Cell(suite.division),
            *(_number(suite.scores.get(c), 3) for c in MODEL_CLASSES), _number(suite.benchmark_score, 3),
            *per_class(lambda b: _number(b.summary.t_bench, 1, "provisional" if b.summary.provisional else "")),
            *per_class(lambda b: _number(None if b.energy_j is None else b.energy_j / 3.6e6, 3)),
            *per_class(lambda b: _number(b.cost, 2))]


def ranked_rows(submissions: Sequence[Submission], links: dict[str, str]) -> list[list[Cell]]:
    """One row per ranked suite of each submission, best benchmark score first; equal scores share a rank.
    `links`: submission slug -> URL of its report."""
    entries = sorted(((s, suite) for s in submissions for suite in s.ranked_suites()),
                     key=lambda e: (-e[1].benchmark_score, e[0].name, e[1].suite))
    rows, rank = [], 0
    for position, (submission, suite) in enumerate(entries, start=1):
        if position == 1 or suite.benchmark_score != entries[position - 2][1].benchmark_score:
            rank = position
        rows.append(_row(rank, submission, suite, links.get(submission.slug)))
    return rows


def not_ranked(submissions: Sequence[Submission], links: dict[str, str]) -> list[NotRanked]:
    """The submissions (or suites of one) that are not ranked, in the order given, each with its reasons."""
    return [NotRanked(clip(s.name), links.get(s.slug), [clip(r, 4 * MAX_CELL) for r in s.not_ranked()])
            for s in submissions if s.not_ranked()]
