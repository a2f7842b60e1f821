"""Check a set of runs as a whole, then time and score each benchmark in it (the set-level half of the
scorer; vmb.scoring.validate checks each run on its own).

Deviations are what MLPerf's open division allows and its closed division does not: fixed config keys
changed, code other than the benchmark version publishes (benchmark_digest: vmb.scoring.release), and convergence in significantly fewer epochs than
the reference (vmb.scoring.convergence). A closed-division run with a deviation is invalid (one reason per
deviation), except convergence, which the closed division normalises as MLPerf does: the benchmark's time is
scaled by reference mean epochs / submission mean epochs before it is scored. An open-division run keeps its
deviations as a list that every output shows next to its score, labelled "open division".

Every run is judged by the rules of the benchmark version it declares, and scored against a reference of that
version. `make_reference` turns a valid set of closed-division runs into a reference.
"""
from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import vmb
from vmb import rules
from vmb.record.schema import RESULT, RUN_LOG
from vmb.reporting import system_line
from vmb.scoring.convergence import Convergence, check_convergence, not_checked
from vmb.scoring.cost import cost_to_target, energy_to_target
from vmb.scoring.reference import FORMAT, Reference, ReferenceEntry, ReferenceFileError, check_reference_entry
from vmb.scoring.release import Release, UnknownVersionError
from vmb.scoring.score import MODEL_CLASSES, TimeSummary, benchmark_score, model_score, summarize_times
from vmb.scoring.validate import Run, RunFolderError, check_run, load_run, run_deviations, run_release, short_digest

CLOSED_ONLY = "closed division invalid; submit in the open division (BENCHMARK.DIVISION open) to report it"


@dataclass
class RunCheck:
    """One path given to the scorer: the parsed run (None if unreadable), why it is invalid, and its
    deviations (open division only: a closed run's deviations are among its reasons)."""

    path: Path
    run: Run | None
    reasons: list[str]
    deviations: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.reasons


@dataclass
class BenchmarkResult:
    """The runs of one benchmark, their time, the convergence check, and the score against the reference."""

    benchmark: rules.Benchmark
    runs: list[RunCheck]
    summary: TimeSummary
    n_devices: int
    device_unit: str
    reference: ReferenceEntry | None
    score: float | None
    reasons: list[str] = field(default_factory=list)
    division: str | None = None  # the division every run declares; None when they differ (a reason)
    convergence: Convergence | None = None  # None without a reference or when it cannot be checked (notes)
    time_factor: float = 1.0  # closed division: the convergence normalisation of t_bench for the score
    deviations: list[str] = field(default_factory=list)  # open division: the failed convergence check
    notes: list[str] = field(default_factory=list)
    cost: float | None = None  # cost to target at --cost-per-hour (vmb.scoring.cost); None with cost_note
    cost_note: str | None = None
    energy_j: float | None = None  # energy to target (mean joules of the successful runs); None with energy_note
    energy_note: str | None = None

    @property
    def valid(self) -> bool:
        return not self.reasons and all(r.valid for r in self.runs)

    @property
    def t_scored(self) -> float | None:
        """The time that enters the score: t_bench, normalised for convergence in the closed division."""
        return None if self.summary.t_bench is None else self.summary.t_bench * self.time_factor

    @property
    def normalised(self) -> bool:
        return self.time_factor != 1.0


@dataclass
class SuiteResult:
    """The benchmark score of one suite (CNN and transformer halves)."""

    suite: str
    scores: dict[str, float | None]  # model class -> score
    benchmarks: dict[str, str | None]  # model class -> benchmark name present in the set
    benchmark_score: float | None
    note: str | None
    division: str  # open when either half is in the open division


@dataclass
class Assessment:
    """Everything the scorer found about a set of runs."""

    runs: list[RunCheck]
    benchmarks: dict[str, BenchmarkResult]
    suites: dict[str, SuiteResult]
    reference: Reference | None
    reasons: list[str]  # about the set as a whole (packages, mixed datasets, ...)
    cost_per_hour: float | None = None  # tools/score.py --cost-per-hour

    def all_reasons(self) -> list[str]:
        """Every reason, each prefixed by the run or benchmark it concerns."""
        return [*self.reasons, *(f"{r.path}: {reason}" for r in self.runs for reason in r.reasons),
                *(f"{name}: {reason}" for name, b in self.benchmarks.items() for reason in b.reasons)]

    def all_deviations(self) -> list[str]:
        """Every open-division deviation, each prefixed by the run or benchmark it concerns."""
        return [*(f"{r.path}: {deviation}" for r in self.runs for deviation in r.deviations),
                *(f"{name}: {deviation}" for name, b in self.benchmarks.items() for deviation in b.deviations)]

    def all_notes(self) -> list[str]:
        """Every note (what was not checked, and why), each prefixed by its benchmark."""
        return [f"{name}: {note}" for name, b in self.benchmarks.items() for note in b.notes]

    @property
    def valid(self) -> bool:
        return bool(self.runs) and not self.all_reasons()


def check_path(path: Path) -> RunCheck:
    """Load and check one run folder by the rules of its benchmark version; never raises for a bad folder."""
    try:
        run = load_run(path)
    except RunFolderError as exc:
        return RunCheck(path, None, [str(exc).splitlines()[0].removeprefix(f"{path}: ")])
    try:
        run_release(run)
    except UnknownVersionError as exc:
        return RunCheck(path, run, [f"{RESULT}: {exc}"])
    try:
        reasons = check_run(run)
        deviations = run_deviations(run)
    except Exception as exc:  # a submission the checks did not foresee: one line for this run, not a traceback
        detail = (str(exc).splitlines() or [""])[0]
        return RunCheck(path, run, [f"cannot be checked ({type(exc).__name__}: {detail})"])
    if run.division == rules.OPEN:
        return RunCheck(path, run, reasons, deviations)
    return RunCheck(path, run, reasons + [f"{deviation}: {CLOSED_ONLY}" for deviation in deviations])


def _known_version(run: Run) -> bool:
    try:
        run_release(run)
    except UnknownVersionError:
        return False
    return True


def _distinct(values: list) -> list:
    return list(dict.fromkeys(values))


def _log_sha256(run: Run) -> str | None:
    try:
        return hashlib.sha256((run.path / RUN_LOG).read_bytes()).hexdigest()
    except OSError:
        return None


def _duplicates(checks: list[RunCheck]) -> list[str]:
    """One line for each run that repeats an earlier one: the same folder given twice, an identical run log
    (a copied folder), or the same run_start_ms and run_stop_ms (a copy with an edited log)."""
    first: dict[tuple, Path] = {}
    reasons = []
    for check in checks:
        if check.run is None:
            continue
        result = check.run.result
        keys = {("folder", check.path.resolve()): "the same folder given twice",
                ("log", _log_sha256(check.run)): f"identical {RUN_LOG}",
                ("clock", result["run_start_ms"], result["run_stop_ms"]): "the same run_start_ms and run_stop_ms"}
        repeated = next(((first[key], why) for key, why in keys.items() if key in first and None not in key), None)
        if repeated:
            reasons.append(f"{check.path} duplicates {repeated[0]} ({repeated[1]}); each run counts once")
        for key in keys:
            first.setdefault(key, check.path)
    return reasons


def _benchmark_reasons(runs: list[Run], reference: ReferenceEntry | None, release: Release) -> list[str]:
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
        reasons += check_reference_entry(reference, release)
        for fingerprint in _distinct(r.result["dataset_fingerprint"] for r in runs):
            if fingerprint != reference.dataset_fingerprint:
                reasons.append(f"dataset fingerprint {fingerprint} differs from the reference's "
                               f"{reference.dataset_fingerprint} (a different dataset)")
        if runs and runs[0].device_unit != reference.device_unit:
            reasons.append(f"runs count {runs[0].device_unit} but the reference counts {reference.device_unit}")
    return reasons


def _check_convergence(result: BenchmarkResult, reference: ReferenceEntry, release: Release) -> None:
    """Test the runs' epochs to target against the reference's by `release`'s rule; normalise (closed) or report
    (open)."""
    note = not_checked(reference.epochs_to_target, release.min_reference_runs)
    if note:
        result.notes.append(note)
        return
    epochs = [c.run.result["epochs"] for c in result.runs if c.run.success]
    try:
        result.convergence = check_convergence(reference.epochs_to_target, epochs, release.p_value,
                                               release.min_reference_runs)
    except ValueError as exc:  # epochs an invalid run claims (not positive): its own reasons say why
        result.notes.append(f"convergence not checked ({exc})")
        return
    if result.convergence.faster:
        if result.division == rules.OPEN:
            result.deviations.append(f"convergence: {result.convergence.describe()}")
        else:
            result.time_factor = result.convergence.factor


def _score_benchmark(name: str, checks: list[RunCheck], reference: Reference | None,
                     cost_per_hour: float | None = None) -> BenchmarkResult:
    benchmark = rules.BENCHMARKS[name]
    runs = [c.run for c in checks]
    summary = summarize_times([r.result["time_to_target_s"] if r.success else None for r in runs])
    entry = reference.entries.get(name) if reference else None
    versions = _distinct(r.version for r in runs)
    release = run_release(runs[0])  # every run's version is known: check_path refuses the others
    reasons = _benchmark_reasons(runs, entry, release)
    if len(versions) > 1:
        reasons.append(f"runs are of different benchmark versions ({', '.join(versions)}); all runs of a benchmark "
                       "must run one version")
    if summary.problem:
        reasons.append(summary.problem)
    divisions = _distinct(r.division for r in runs)
    if len(divisions) > 1:
        reasons.append(f"runs declare different divisions ({', '.join(map(str, divisions))}); all runs of a "
                       "benchmark must declare the same one")
    n_devices, unit = runs[0].result["n_devices"], runs[0].device_unit
    result = BenchmarkResult(benchmark, checks, summary, n_devices, unit, entry, None, reasons,
                             division=divisions[0] if len(divisions) == 1 else None)
    if entry is not None and summary.t_bench is not None:
        _check_convergence(result, entry, release)
    if result.valid and entry is not None:
        result.score = model_score(entry.t_ref_s, entry.n_devices_ref, result.t_scored, n_devices)
    result.cost, result.cost_note = cost_to_target(result.t_scored, cost_per_hour, unit)
    result.energy_j, result.energy_note = energy_to_target([r.result for r in runs])
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
    is_open = any(results[name].division == rules.OPEN for name in present.values() if name)
    return SuiteResult(suite, scores, present, total, note, rules.OPEN if is_open else rules.CLOSED)


def assess(paths: Sequence[Path], reference: Reference | None = None, set_reasons: Sequence[str] = (),
           cost_per_hour: float | None = None) -> Assessment:
    """Check every run folder and the set as a whole, then time and score each benchmark present (with its
    cost to target at `cost_per_hour`, the price of one hour of the submission's system, when given)."""
    checks = [check_path(Path(p)) for p in paths]
    reasons = list(set_reasons) + _duplicates(checks)
    if not checks:
        reasons.append("no runs given")
    loaded = [c for c in checks if c.run is not None and c.run.benchmark in rules.BENCHMARKS and _known_version(c.run)]
    by_suite: dict[str, list[Run]] = {}
    for check in loaded:
        by_suite.setdefault(rules.BENCHMARKS[check.run.benchmark].suite, []).append(check.run)
    for suite, runs in by_suite.items():
        prints = _distinct(r.result["dataset_fingerprint"] for r in runs)
        if len(prints) > 1:
            reasons.append(f"suite {suite}: runs used {len(prints)} different datasets (fingerprints "
                           f"{', '.join(map(short_digest, prints))}); a set uses one dataset")
    names = _distinct(c.run.benchmark for c in loaded)
    benchmarks = {name: _score_benchmark(name, [c for c in loaded if c.run.benchmark == name], reference,
                                         cost_per_hour) for name in names}
    suites = {suite: _suite_result(suite, benchmarks, reference) for suite in by_suite}
    return Assessment(checks, benchmarks, suites, reference, reasons, cost_per_hour)


def make_reference(assessment: Assessment, command: str) -> dict:
    """A reference (as JSON data) with one entry per benchmark of a valid set of closed-division runs that all
    ran the same code.

    Raises:
        ReferenceFileError: the set is invalid or empty, has open-division runs, or ran more than one code.
    """
    if not assessment.valid:
        raise ReferenceFileError("cannot make a reference from an invalid set of runs (see the problems above)")
    runs = [check.run for check in assessment.runs]
    open_runs = [str(r.path) for r in runs if r.division != rules.CLOSED]
    if open_runs:
        raise ReferenceFileError(f"a reference is made from closed-division runs only; {', '.join(open_runs)} "
                             f"{'is' if len(open_runs) == 1 else 'are'} {rules.OPEN}")
    versions = _distinct(r.version for r in runs)
    if len(versions) > 1:  # valid closed runs of one version ran its published code
        raise ReferenceFileError(f"the runs are of {len(versions)} benchmark versions ({', '.join(versions)}); all "
                                 "runs of a reference run one")
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    entries = {}
    for name, result in assessment.benchmarks.items():
        runs = [check.run for check in result.runs]
        summary = result.summary
        entries[name] = {
            "model_class": result.benchmark.model_class,
            "suite": result.benchmark.suite,
            "t_ref_s": summary.t_bench,
            "n_devices_ref": result.n_devices,
            "device_unit": result.device_unit,
            "target_top1": runs[0].result["target_top1"],
            "dataset_fingerprint": runs[0].result["dataset_fingerprint"],
            "fixed_config_digest": runs[0].result["fixed_config_digest"],
            "benchmark_version": runs[0].version,
            "benchmark_digest": runs[0].result["benchmark_digest"],
            "epochs_to_target": [r.result["epochs"] for r in runs if r.success],
            "hardware": " | ".join(dict.fromkeys(system_line(r.system) for r in runs)),
            "date": today,
            "provisional": summary.provisional,
            "provenance": {
                "method": f"{summary.method} of {summary.n_runs} runs ({summary.n_failed} missed the target)",
                "runs": [{"run": str(r.path), "seed": r.result["seed"], "status": r.result["status"],
                          "time_to_target_s": r.result["time_to_target_s"],
                          "config_digest": r.result["config_digest"], "git_commit": r.result["git_commit"]}
                         for r in runs],
                "command": command,
                "vmb_version": vmb.__version__,
            },
        }
    return {"format": FORMAT, "benchmarks": entries}
