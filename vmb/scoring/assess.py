"""Check a set of runs as a whole, then time and score each benchmark in it (the set-level half of the
scorer; vmb.scoring.validate checks each run on its own)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from fvcore.common.config import CfgNode

from vmb.config import load_config
from vmb.record import rules
from vmb.scoring.reference import Reference, ReferenceEntry, check_reference_entry
from vmb.scoring.score import MODEL_CLASSES, TimeSummary, benchmark_score, model_score, summarize_times
from vmb.scoring.validate import Run, RunFolderError, check_run, load_run


@dataclass
class RunCheck:
    """One path given to the scorer: the parsed run (None if unreadable) and why it is invalid."""

    path: Path
    run: Run | None
    reasons: list[str]

    @property
    def valid(self) -> bool:
        return not self.reasons


@dataclass
class BenchmarkResult:
    """The runs of one benchmark, their time, and the score against the reference entry."""

    benchmark: rules.Benchmark
    runs: list[RunCheck]
    summary: TimeSummary
    n_devices: int
    device_unit: str
    reference: ReferenceEntry | None
    score: float | None
    reasons: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.reasons and all(r.valid for r in self.runs)


@dataclass
class SuiteResult:
    """The benchmark score of one suite (CNN and transformer halves)."""

    suite: str
    scores: dict[str, float | None]  # model class -> score
    benchmarks: dict[str, str | None]  # model class -> benchmark name present in the set
    benchmark_score: float | None
    note: str | None


@dataclass
class Assessment:
    """Everything the scorer found about a set of runs."""

    runs: list[RunCheck]
    benchmarks: dict[str, BenchmarkResult]
    suites: dict[str, SuiteResult]
    reference: Reference | None
    reasons: list[str]  # about the set as a whole (packages, mixed datasets, ...)

    def all_reasons(self) -> list[str]:
        """Every reason, each prefixed by the run or benchmark it concerns."""
        return [*self.reasons, *(f"{r.path}: {reason}" for r in self.runs for reason in r.reasons),
                *(f"{name}: {reason}" for name, b in self.benchmarks.items() for reason in b.reasons)]

    @property
    def valid(self) -> bool:
        return bool(self.runs) and not self.all_reasons()


def check_path(path: Path) -> RunCheck:
    """Load and check one run folder; never raises for a bad folder."""
    try:
        run = load_run(path)
    except RunFolderError as exc:
        return RunCheck(path, None, [str(exc).splitlines()[0].removeprefix(f"{path}: ")])
    try:
        return RunCheck(path, run, check_run(run))
    except Exception as exc:  # a submission the checks did not foresee: one line for this run, not a traceback
        detail = (str(exc).splitlines() or [""])[0]
        return RunCheck(path, run, [f"cannot be checked ({type(exc).__name__}: {detail})"])


def _distinct(values: list) -> list:
    return list(dict.fromkeys(values))


def _short(fingerprint: str) -> str:
    """A fingerprint's labels and first 12 digits: "sha256:1c0036af3ee1...", "unprepared:sha256:02ddb3a199cc..."."""
    labels, _, digits = fingerprint.rpartition(":")
    return f"{labels}:{digits[:12]}..." if labels else f"{digits[:12]}..."


def _benchmark_reasons(runs: list[Run], reference: ReferenceEntry | None, canonical: CfgNode) -> list[str]:
    """Set-level checks of one benchmark's runs."""
    reasons = []
    devices = _distinct((r.result["n_devices"], r.result["device_type"]) for r in runs)
    if len(devices) > 1:
        reasons.append(f"runs use different devices ({', '.join(f'{n} {t}' for n, t in devices)}); "
                       "all runs of a benchmark must use the same ones")
    seeds = sorted(r.result["seed"] for r in runs)
    if seeds != rules.expected_seeds(len(runs)):
        reasons.append(f"{len(runs)} run(s) must use RNG_SEED 0 to {len(runs) - 1}, each once "
                       f"(rules.expected_seeds); these use {', '.join(map(str, seeds))}")
    if reference is not None:
        reasons += check_reference_entry(reference, canonical)
        for fingerprint in _distinct(r.result["dataset_fingerprint"] for r in runs):
            if fingerprint != reference.dataset_fingerprint:
                reasons.append(f"dataset fingerprint {fingerprint} differs from the reference's "
                               f"{reference.dataset_fingerprint} (a different dataset)")
        if runs and runs[0].device_unit != reference.device_unit:
            reasons.append(f"runs count {runs[0].device_unit} but the reference counts {reference.device_unit}")
    return reasons


def _score_benchmark(name: str, checks: list[RunCheck], reference: Reference | None) -> BenchmarkResult:
    benchmark = rules.BENCHMARKS[name]
    runs = [c.run for c in checks]
    summary = summarize_times([r.result["time_to_target_s"] if r.success else None for r in runs])
    entry = reference.entries.get(name) if reference else None
    reasons = _benchmark_reasons(runs, entry, load_config(benchmark.config))
    if summary.problem:
        reasons.append(summary.problem)
    n_devices, unit = runs[0].result["n_devices"], runs[0].device_unit
    result = BenchmarkResult(benchmark, checks, summary, n_devices, unit, entry, None, reasons)
    if result.valid and entry is not None:
        result.score = model_score(entry.t_ref_s, entry.n_devices_ref, summary.t_bench, n_devices)
    return result


def _suite_result(suite: str, results: dict[str, BenchmarkResult], reference: Reference | None) -> SuiteResult:
    halves = {b.model_class: b.name for b in rules.BENCHMARKS.values() if b.suite == suite}
    present = {cls: (name if name in results else None) for cls, name in halves.items()}
    scores = {cls: results[name].score if name else None for cls, name in present.items()}
    total = benchmark_score(scores)
    note = None
    missing = [halves[cls] for cls in MODEL_CLASSES if cls in halves and present[cls] is None]
    if missing:
        note = (f"the benchmark score needs both the CNN ({halves.get('cnn')}) and the transformer "
                f"({halves.get('transformer')}) benchmark; no runs of {', '.join(missing)}")
    elif reference is None:
        note = "scores need a reference (--reference FILE)"
    elif total is None:
        note = "no benchmark score: a half has no valid score (see the problems)"
    return SuiteResult(suite, scores, present, total, note)


def assess(paths: Sequence[Path], reference: Reference | None = None,
           set_reasons: Sequence[str] = ()) -> Assessment:
    """Check every run folder and the set as a whole, then time and score each benchmark present."""
    checks = [check_path(Path(p)) for p in paths]
    reasons = list(set_reasons)
    if not checks:
        reasons.append("no runs given")
    loaded = [c for c in checks if c.run is not None and c.run.benchmark in rules.BENCHMARKS]
    by_suite: dict[str, list[Run]] = {}
    for check in loaded:
        by_suite.setdefault(rules.BENCHMARKS[check.run.benchmark].suite, []).append(check.run)
    for suite, runs in by_suite.items():
        prints = _distinct(r.result["dataset_fingerprint"] for r in runs)
        if len(prints) > 1:
            reasons.append(f"suite {suite}: runs used {len(prints)} different datasets (fingerprints "
                           f"{', '.join(map(_short, prints))}); a set uses one dataset")
    names = _distinct(c.run.benchmark for c in loaded)
    benchmarks = {name: _score_benchmark(name, [c for c in loaded if c.run.benchmark == name], reference)
                  for name in names}
    suites = {suite: _suite_result(suite, benchmarks, reference) for suite in by_suite}
    return Assessment(checks, benchmarks, suites, reference, reasons)
