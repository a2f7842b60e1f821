"""Load run folders safely and check that a set of runs can be trusted; then time and score it.

A run folder holds what the trainer writes: run_log.txt, result.json, config.yaml, system.json. Only
json and yaml.safe_load read them (nothing is executed or unpickled). Every check returns one-line
reasons; a run or a set with any reason is invalid.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from fvcore.common.config import CfgNode

from vmb.bench import compliance, rules
from vmb.bench.reference import Reference, ReferenceEntry, check_reference_entry
from vmb.bench.runlog import (CONFIG, RESULT, RUN_FILES, RUN_LOG, RUN_START, RUN_STOP, SYSTEM, LogEvent, find,
                              read_events)
from vmb.bench.score import (MODEL_CLASSES, TimeSummary, benchmark_score, device_unit, model_score,
                             summarize_times)
from vmb.config import config_digest, config_from_yaml_text, flat_items, load_config
from vmb.errors import VMBError

SUCCESS = "success"

_NUMBER, _INT = "number", "integer"
RESULT_FIELDS = {
    "benchmark": str, "status": str, "time_to_target_s": _NUMBER, "run_start_ms": _INT, "run_stop_ms": _INT,
    "target_top1": _NUMBER, "best_top1": _NUMBER, "evals": list, "n_devices": _INT, "device_type": str,
    "global_batch_size": _INT, "seed": _INT, "dataset_fingerprint": str, "config_digest": str,
    "fixed_config_digest": str,
}
_TIME_TOLERANCE_S = 1e-3  # result.json rounds nothing, but allow for a millisecond
_TOP1_TOLERANCE = 1e-6


class RunFolderError(VMBError):
    """A path is not a readable, complete run folder."""


@dataclass(frozen=True)
class Run:
    """The files of one run folder, parsed."""

    path: Path
    result: dict
    events: list[LogEvent]
    config: CfgNode
    system: dict

    @property
    def benchmark(self) -> str:
        return self.result["benchmark"]

    @property
    def success(self) -> bool:
        return self.result["status"] == SUCCESS

    @property
    def device_unit(self) -> str:
        return device_unit(self.result["device_type"])


def _is_type(value: Any, kind: Any) -> bool:
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, kind)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFolderError(f"{path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(_read_text(path), parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise RunFolderError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except ValueError as exc:
        raise RunFolderError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RunFolderError(f"{path}: not a JSON object")
    return data


def _check_result_fields(result: dict, path: Path) -> None:
    for key, kind in RESULT_FIELDS.items():
        if key not in result:
            raise RunFolderError(f"{path}: field {key} is missing")
        if not _is_type(result[key], kind):
            name = {_NUMBER: "a number", _INT: "an integer", str: "a string", list: "a list"}[kind]
            raise RunFolderError(f"{path}: field {key} must be {name}, got {result[key]!r}")


def _read_run(path: Path) -> Run:
    try:
        if not path.is_dir():
            raise RunFolderError(f"{path}: no such folder" if not path.exists() else f"{path}: not a run folder")
        present = {child.name for child in path.iterdir()}
    except OSError as exc:
        raise RunFolderError(f"{path}: cannot read the folder ({exc.strerror or exc})") from None
    missing = [name for name in RUN_FILES if name not in present]
    if len(missing) == len(RUN_FILES):
        raise RunFolderError(f"{path}: not a run folder (no {', '.join(RUN_FILES)})")
    if RESULT in missing and RUN_LOG in present:
        raise RunFolderError(f"{path}: the run did not finish (no {RESULT}; its log has no run_stop or it was "
                             "removed)")
    if missing:
        raise RunFolderError(f"{path}: incomplete run folder ({', '.join(missing)} missing)")
    result = _read_json(path / RESULT)
    _check_result_fields(result, path / RESULT)
    config = config_from_yaml_text(_read_text(path / CONFIG), str(path / CONFIG))
    try:
        events = read_events(path / RUN_LOG)
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFolderError(f"{path / RUN_LOG}: cannot read it ({exc})") from None
    return Run(path, result, events, config, _read_json(path / SYSTEM))


def load_run(path: Path) -> Run:
    """Parse the run folder at `path`.

    Raises:
        RunFolderError: `<path>: <reason>` when the path is not a folder, is unreadable, lacks a file, or a
            file is malformed (files are named relative to the folder).
    """
    try:
        return _read_run(path)
    except VMBError as exc:
        text = str(exc).replace(f"{path}{os.sep}", "")
        raise RunFolderError(text if text.startswith(f"{path}: ") else f"{path}: {text}") from None


# ---------------------------------------------------------------------------------------------- per run

def check_benchmark(run: Run) -> list[str]:
    """The run names a known benchmark, the same one in result.json, config.yaml and the log."""
    name = run.benchmark
    if name not in rules.BENCHMARKS:
        return [f"{RESULT}: unknown benchmark {name!r} (known: {', '.join(rules.BENCHMARKS)})"]
    reasons = []
    if run.config.BENCHMARK.NAME != name:
        reasons.append(f"{CONFIG}: BENCHMARK.NAME is {run.config.BENCHMARK.NAME!r} but {RESULT} says {name!r}")
    logged = [e.value for e in find(run.events, "submission_benchmark")]
    if logged and logged[0] != name:
        reasons.append(f"{RUN_LOG}: submission_benchmark is {logged[0]!r} but {RESULT} says {name!r}")
    return reasons


def config_diff(canonical: CfgNode, config: CfgNode) -> list[str]:
    """`KEY: canonical -> run` for every key outside rules.RESOURCE_KEYS whose value differs."""
    want, have = flat_items(canonical), flat_items(config)
    return [f"{key}: {want.get(key)!r} -> {have.get(key)!r}" for key in sorted(want.keys() | have.keys())
            if key not in rules.RESOURCE_KEYS and want.get(key) != have.get(key)]


def check_config(run: Run, canonical: CfgNode) -> list[str]:
    """The run's resolved config is the canonical one except resource keys, and result.json's digests are
    those of config.yaml."""
    reasons = []
    diff = config_diff(canonical, run.config)
    if diff:
        reasons.append(f"{CONFIG} changes fixed keys (only resource keys may change): {'; '.join(diff)}")
    if run.result["config_digest"] != config_digest(run.config):
        reasons.append(f"{RESULT}: config_digest is not the digest of {CONFIG}")
    if run.result["fixed_config_digest"] != config_digest(run.config, exclude=rules.RESOURCE_KEYS):
        reasons.append(f"{RESULT}: fixed_config_digest is not the digest of {CONFIG}")
    return reasons


def check_target(run: Run, canonical: CfgNode) -> list[str]:
    """The run aimed at the benchmark's target."""
    target, canonical_target = run.result["target_top1"], canonical.BENCHMARK.TARGET_TOP1
    if target != canonical_target:
        return [f"{RESULT}: target_top1 {target} is not the benchmark's target {canonical_target}"]
    return []


def _first_value(events: list[LogEvent], key: str) -> Any:
    found = find(events, key)
    return found[0].value if found else None


def _check_times(events: list[LogEvent]) -> list[str]:
    for before, event in zip(events, events[1:]):
        if event.time_ms < before.time_ms:
            return [f"{RUN_LOG}:{event.line_no}: time goes backwards ({event.time_ms} ms after {before.time_ms} ms "
                    f"on line {before.line_no})"]
    return []


def _check_start_stop(run: Run) -> list[str]:
    """result.json's clock and status are the log's, and nothing is logged after run_stop."""
    starts, stops = find(run.events, RUN_START), find(run.events, RUN_STOP)
    if len(starts) != 1:
        return [f"{RUN_LOG}: {len(starts)} run_start events (a run has exactly one)"]
    if not stops:
        return [f"{RUN_LOG}: no run_stop (the run did not finish, or the log is truncated)"]
    if len(stops) > 1:
        return [f"{RUN_LOG}: {len(stops)} run_stop events (a run has exactly one)"]
    start, stop, result = starts[0], stops[0], run.result
    reasons = []
    log_seconds = (stop.time_ms - start.time_ms) / 1000.0
    if abs(result["time_to_target_s"] - log_seconds) > _TIME_TOLERANCE_S:
        reasons.append(f"{RESULT}: time_to_target_s is {result['time_to_target_s']} but the log gives "
                       f"{log_seconds} (run_stop - run_start)")
    if (result["run_start_ms"], result["run_stop_ms"]) != (start.time_ms, stop.time_ms):
        reasons.append(f"{RESULT}: run_start_ms/run_stop_ms are not the log's")
    logged_status = stop.metadata.get("status") if isinstance(stop.metadata, dict) else None
    if result["status"] != logged_status:
        reasons.append(f"{RESULT}: status is {result['status']!r} but run_stop says {logged_status!r}")
    if run.events[-1] is not stop:
        reasons.append(f"{RUN_LOG}:{run.events[-1].line_no}: {run.events[-1].key} after run_stop")
    return reasons


def _check_eval_counts(run: Run) -> list[str]:
    """Every eval_accuracy carries the (correct, total) it was computed from: total is the logged eval_samples
    (every validation video counted once) and the value is 100 * correct / total."""
    eval_samples = _first_value(run.events, "eval_samples")
    for event in find(run.events, "eval_accuracy"):
        correct, total = event.metadata.get("correct"), event.metadata.get("total")
        where = f"{RUN_LOG}:{event.line_no}: eval_accuracy"
        if not (_is_type(correct, _INT) and _is_type(total, _INT) and 0 <= correct <= total and total > 0):
            return [f"{where} lacks valid correct/total counts (metadata), so top-1 cannot be recomputed"]
        if total != eval_samples:
            return [f"{where} counted {total} videos but eval_samples is {eval_samples}"]
        if not _is_type(event.value, _NUMBER) or abs(event.value - 100.0 * correct / total) > _TOP1_TOLERANCE:
            return [f"{where} is {event.value} but its counts give {100.0 * correct / total} ({correct}/{total})"]
    return []


def _check_evals(run: Run) -> list[str]:
    """result.json's evaluations and best top-1 are the log's, and the log's are their counts'."""
    logged = [e.value for e in find(run.events, "eval_accuracy")]
    numbers = [v for v in logged if _is_type(v, _NUMBER)]
    best = max(numbers, default=0.0)
    reasons = _check_eval_counts(run)
    if abs(run.result["best_top1"] - best) > _TOP1_TOLERANCE:
        reasons.append(f"{RESULT}: best_top1 is {run.result['best_top1']} but the log's best eval_accuracy is {best}")
    evals = run.result["evals"]
    top1 = [e.get("top1") if isinstance(e, dict) else None for e in evals]
    if len(top1) != len(logged) or any(not _is_type(a, _NUMBER) or not _is_type(b, _NUMBER)
                                       or abs(a - b) > _TOP1_TOLERANCE for a, b in zip(top1, logged)):
        reasons.append(f"{RESULT}: evals do not match the log's eval_accuracy events")
    return reasons


def _check_header(run: Run) -> list[str]:
    """Seed, global batch, target and devices agree between result.json, the log, config.yaml, system.json."""
    result, reasons = run.result, []
    for key, logged_key in (("seed", "seed"), ("global_batch_size", "global_batch_size"),
                            ("target_top1", "target_top1")):
        logged = _first_value(run.events, logged_key)
        if logged is not None and logged != result[key]:
            reasons.append(f"{RESULT}: {key} is {result[key]!r} but the log says {logged!r}")
    for key, config_value in (("seed", run.config.RNG_SEED), ("global_batch_size", run.config.TRAIN.BATCH_SIZE)):
        if config_value != result[key]:
            reasons.append(f"{RESULT}: {key} is {result[key]!r} but {CONFIG} says {config_value!r}")
    if result["time_to_target_s"] <= 0:
        reasons.append(f"{RESULT}: time_to_target_s is {result['time_to_target_s']} (must be positive)")
    if result["n_devices"] < 1:
        reasons.append(f"{RESULT}: n_devices is {result['n_devices']} (at least 1)")
    platform = _first_value(run.events, "submission_platform")
    if platform is not None and platform != f"{result['n_devices']}x{result['device_type']}":
        reasons.append(f"{RESULT}: {result['n_devices']} {result['device_type']} devices but the log's "
                       f"submission_platform is {platform!r}")
    system = (run.system.get("processes"), run.system.get("device_type"))
    if system != (result["n_devices"], result["device_type"]):
        reasons.append(f"{SYSTEM}: {system[0]!r} processes on {system[1]!r} but {RESULT} says "
                       f"{result['n_devices']} on {result['device_type']!r}")
    if result["device_type"] not in ("cpu", "cuda"):
        reasons.append(f"{RESULT}: device_type {result['device_type']!r} is neither 'cpu' nor 'cuda'")
    if result["status"] not in (SUCCESS, "aborted"):
        reasons.append(f"{RESULT}: status {result['status']!r} is neither 'success' nor 'aborted'")
    return reasons


def check_consistency(run: Run) -> list[str]:
    """The files of a run tell one story: monotonic log times, result.json equal to what the log says."""
    if not run.events:
        return [f"{RUN_LOG}: no MLLOG events (empty, or not a run log)"]
    return [*_check_times(run.events), *_check_start_stop(run), *_check_evals(run), *_check_header(run)]


def check_run(run: Run) -> list[str]:
    """Every per-run check: benchmark, config, target, internal consistency, compliance of the log."""
    reasons = check_benchmark(run)
    if run.benchmark in rules.BENCHMARKS:
        canonical = load_config(rules.BENCHMARKS[run.benchmark].config)
        reasons += check_config(run, canonical) + check_target(run, canonical)
    return reasons + check_consistency(run) + compliance.check_log(run.path / RUN_LOG)


def system_line(system: dict) -> str:
    """A compact description: accelerators and count, CPU, memory, framework."""
    def get(key: str) -> str:
        value = system.get(key)
        return "?" if value in (None, "") else str(value)

    if system.get("device_type") == "cuda":
        per_node, nodes = system.get("accelerators_per_node"), system.get("number_of_nodes")
        count = per_node * nodes if _is_type(per_node, _INT) and _is_type(nodes, _INT) else "?"
        devices = f"{count} x {get('accelerator_model_name')} ({get('accelerator_memory_capacity')})"
    else:
        processes = get("processes")
        devices = f"CPU only, {processes} process{'' if processes == '1' else 'es'}"
    return (f"{devices}; CPU {get('host_processor_model_name')} ({get('host_processor_core_count')} cores); "
            f"memory {get('host_memory_capacity')}; {get('framework')}")


# ---------------------------------------------------------------------------------------------- the set

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
