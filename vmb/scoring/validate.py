"""Load run folders safely and check each run on its own (vmb.scoring.assess checks the set and scores it).

A run folder holds what the trainer writes: run_log.txt, result.json, config.yaml, system.json. Only
json and yaml.safe_load read them (nothing is executed or unpickled). Every check returns one-line
reasons; a run or a set with any reason is invalid. Deviations (`run_deviations`) are differences that only
the open division allows: the scorer makes them reasons in the closed division (vmb.scoring.assess).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fvcore.common.config import CfgNode

from vmb.config import config_digest, config_from_yaml_text, flat_items, load_config
from vmb.errors import VMBError
from vmb import rules
from vmb.record.runlog import LogEvent, find, read_events
from vmb.record.schema import (ABORTED, BENCHMARK_DIGEST, BENCHMARK_VERSION, BOOL_OR_NULL, CONFIG, CONFIG_DIGEST,
                               INTEGER, NUMBER, PROVENANCE_FIELDS, RESULT, RESULT_FIELDS, RUN_FILES, RUN_LOG,
                               RUN_START, RUN_STOP, SOURCE_DIGEST, STRING_OR_NULL, SUCCESS, SYSTEM, effective_evals)
from vmb.scoring import compliance
from vmb.scoring.release import Release, UnknownVersionError, current_version, load_release
from vmb.scoring.score import device_unit

# result.json field -> the header key that logs the same value (the header is checked against config.yaml).
_RESULT_LOGGED = {"seed": "seed", "global_batch_size": "global_batch_size", "target_top1": "target_top1",
                  "division": "submission_division"}
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

    @property
    def division(self) -> str:
        return self.result["division"]

    @property
    def version(self) -> str:
        """The benchmark version the run declares (BENCHMARK.VERSION)."""
        return self.result["benchmark_version"]


def _is_type(value: Any, kind: Any) -> bool:
    if kind == STRING_OR_NULL:
        return value is None or isinstance(value, str)
    if kind == BOOL_OR_NULL:
        return value is None or isinstance(value, bool)
    if kind == INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == NUMBER:
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
            name = {NUMBER: "a number", INTEGER: "an integer", str: "a string", list: "a list",
                    STRING_OR_NULL: "a string or null", BOOL_OR_NULL: "true, false or null"}[kind]
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
    linked = [name for name in RUN_FILES if (path / name).is_symlink()]
    if linked:  # never read through a link: it may point anywhere
        raise RunFolderError(f"{path}: {', '.join(linked)}: symbolic link(s); a run folder holds its own files")
    result = _read_json(path / RESULT)
    _check_result_fields(result, path / RESULT)
    # A run of another benchmark version may have keys this code does not know: read its config as it is.
    strict = result["benchmark_version"] == current_version()
    config = config_from_yaml_text(_read_text(path / CONFIG), str(path / CONFIG), strict=strict)
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


def config_deviations(run: Run, canonical: CfgNode) -> list[str]:
    """The run's config.yaml changes keys outside rules.RESOURCE_KEYS (one line with the diff), or nothing."""
    diff = config_diff(canonical, run.config)
    return [f"{CONFIG} changes fixed keys ({'; '.join(diff)})"] if diff else []


def check_config(run: Run) -> list[str]:
    """result.json's digests are those of config.yaml."""
    reasons = []
    if run.result["config_digest"] != config_digest(run.config):
        reasons.append(f"{RESULT}: config_digest is not the digest of {CONFIG}")
    if run.result["fixed_config_digest"] != config_digest(run.config, exclude=rules.RESOURCE_KEYS):
        reasons.append(f"{RESULT}: fixed_config_digest is not the digest of {CONFIG}")
    return reasons


def check_target(run: Run, release: Release) -> list[str]:
    """The run aimed at the target its benchmark version publishes."""
    target, published = run.result["target_top1"], release.benchmarks[run.benchmark].target_top1
    if target != published:
        return [f"{RESULT}: target_top1 {target} is not benchmark {release.version}'s target {published}"]
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
        if not (_is_type(correct, INTEGER) and _is_type(total, INTEGER) and 0 <= correct <= total and total > 0):
            return [f"{where} lacks valid correct/total counts (metadata), so top-1 cannot be recomputed"]
        if total != eval_samples:
            return [f"{where} counted {total} videos but eval_samples is {eval_samples}"]
        if not _is_type(event.value, NUMBER) or abs(event.value - 100.0 * correct / total) > _TOP1_TOLERANCE:
            return [f"{where} is {event.value} but its counts give {100.0 * correct / total} ({correct}/{total})"]
    return []


def _check_evals(run: Run) -> list[str]:
    """result.json's evaluations and best top-1 are those of the log that stand (schema.effective_evals: a
    resume supersedes what was logged after its checkpoint), and every logged top-1 is its counts'."""
    standing = effective_evals(run.events)
    logged = [e.value for e in standing]
    best = max((v for v in logged if _is_type(v, NUMBER)), default=0.0)
    reasons = _check_eval_counts(run)
    if abs(run.result["best_top1"] - best) > _TOP1_TOLERANCE:
        reasons.append(f"{RESULT}: best_top1 is {run.result['best_top1']} but the log's best eval_accuracy is {best}")
    evals = run.result["evals"]
    top1 = [e.get("top1") if isinstance(e, dict) else None for e in evals]
    epochs = [e.get("epoch") if isinstance(e, dict) else None for e in evals]
    if len(top1) != len(logged) or any(not _is_type(a, NUMBER) or not _is_type(b, NUMBER)
                                       or abs(a - b) > _TOP1_TOLERANCE for a, b in zip(top1, logged)) \
            or epochs != [e.metadata.get("epoch_num") for e in standing]:
        reasons.append(f"{RESULT}: evals do not match the log's eval_accuracy events (those that stand after "
                       "any resume)")
    return reasons


def _same_value(logged: Any, configured: Any) -> bool:
    """Equal, and a boolean only equals a boolean (JSON's true is not 1)."""
    if isinstance(logged, bool) or isinstance(configured, bool):
        return type(logged) is type(configured) and logged == configured
    return logged == configured


def _check_hyperparameters(run: Run) -> list[str]:
    """Every key of rules.LOGGED_HYPERPARAMETERS is logged exactly once, with config.yaml's value."""
    config, reasons = flat_items(run.config), []
    for key, config_key in rules.LOGGED_HYPERPARAMETERS.items():
        logged = find(run.events, key)
        if len(logged) != 1:
            reasons.append(f"{RUN_LOG}: {key} is logged {len(logged)} times (exactly once, {CONFIG}'s {config_key})")
        elif not _same_value(logged[0].value, config[config_key]):
            reasons.append(f"{RUN_LOG}: {key} is {logged[0].value!r} but {CONFIG}'s {config_key} is "
                           f"{config[config_key]!r}")
    return reasons


def _check_digests(run: Run) -> list[str]:
    """The log's vmb_config_digest is config.yaml's (so a config.yaml edited after the run, with result.json's
    digests recomputed, still disagrees with the log), and result.json's code provenance is the log's and
    system.json's."""
    result, reasons = run.result, []
    logged = find(run.events, CONFIG_DIGEST)
    if len(logged) != 1:
        reasons.append(f"{RUN_LOG}: {CONFIG_DIGEST} is logged {len(logged)} times (exactly once)")
    elif logged[0].value != config_digest(run.config):
        reasons.append(f"{RUN_LOG}: {CONFIG_DIGEST} is not the digest of {CONFIG} (changed after the run?)")
    for key, field in ((SOURCE_DIGEST, "source_digest"), (BENCHMARK_DIGEST, "benchmark_digest"),
                       (BENCHMARK_VERSION, "benchmark_version")):
        logged = find(run.events, key)
        if len(logged) != 1:
            reasons.append(f"{RUN_LOG}: {key} is logged {len(logged)} times (exactly once)")
        elif logged[0].value != result[field]:
            reasons.append(f"{RESULT}: {field} is {result[field]!r} but the log's {key} is {logged[0].value!r}")
    if run.config.get("BENCHMARK", {}).get("VERSION") != result["benchmark_version"]:
        reasons.append(f"{RESULT}: benchmark_version is {result['benchmark_version']!r} but {CONFIG}'s "
                       f"BENCHMARK.VERSION is not")
    for key in PROVENANCE_FIELDS:
        if run.system.get(key) != result[key]:
            reasons.append(f"{SYSTEM}: {key} is {run.system.get(key)!r} but {RESULT} says {result[key]!r}")
    return reasons


def _check_epochs(run: Run) -> list[str]:
    """A successful run's result.json epochs is the epoch_num of the evaluation that reached the target."""
    standing = effective_evals(run.events)
    if not run.success or not standing:
        return []
    logged = standing[-1].metadata.get("epoch_num")
    if not _same_value(run.result["epochs"], logged):
        return [f"{RESULT}: epochs is {run.result['epochs']} but the last eval_accuracy's epoch_num is {logged!r}"]
    return []


def _check_header(run: Run) -> list[str]:
    """Seed, global batch, target, division and devices agree between result.json, the log and system.json
    (the logged hyperparameters are checked against config.yaml by _check_hyperparameters)."""
    result, reasons = run.result, []
    for key, logged_key in _RESULT_LOGGED.items():
        logged = find(run.events, logged_key)
        if len(logged) == 1 and not _same_value(logged[0].value, result[key]):
            reasons.append(f"{RESULT}: {key} is {result[key]!r} but the log says {logged[0].value!r}")
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
    if result["status"] not in (SUCCESS, ABORTED):
        reasons.append(f"{RESULT}: status {result['status']!r} is neither 'success' nor 'aborted'")
    if result["division"] not in rules.DIVISIONS:
        reasons.append(f"{RESULT}: division {result['division']!r} is not one of {', '.join(rules.DIVISIONS)}")
    return reasons


def check_consistency(run: Run) -> list[str]:
    """The files of a run tell one story: monotonic log times, result.json equal to what the log says."""
    if not run.events:
        return [f"{RUN_LOG}: no MLLOG events (empty, or not a run log)"]
    return [*_check_times(run.events), *_check_start_stop(run), *_check_evals(run), *_check_epochs(run),
            *_check_header(run), *_check_hyperparameters(run), *_check_digests(run)]


def run_release(run: Run) -> Release:
    """The release of the benchmark version the run declares.

    Raises:
        UnknownVersionError: this scorer has no rules for that version.
    """
    return load_release(run.version)


def check_run(run: Run) -> list[str]:
    """Every per-run check, by the rules of the run's benchmark version: benchmark, config digests, target,
    internal consistency, compliance of the log. Deviations are not among them (run_deviations)."""
    try:
        release = run_release(run)
    except UnknownVersionError as exc:
        return [f"{RESULT}: {exc}"]
    reasons = check_benchmark(run)
    if run.benchmark in rules.BENCHMARKS and run.benchmark in release.benchmarks:
        reasons += check_config(run) + check_target(run, release)
    elif run.benchmark in rules.BENCHMARKS:
        reasons.append(f"{RESULT}: benchmark {run.benchmark!r} is not part of benchmark version {release.version}")
    return reasons + check_consistency(run) + compliance.check_log(run.path / RUN_LOG, release.compliance_rules)


def run_deviations(run: Run) -> list[str]:
    """What only the open division allows, seen in the run alone: code whose benchmark digest is not the one
    its version publishes, and fixed config keys that differ from the version's canonical config (listed key
    by key for the current version, whose canonical configs are installed; by fixed-config digest for an older
    one)."""
    release = run_release(run)
    published = release.benchmarks.get(run.benchmark)
    if published is None:
        return []
    deviations = []
    digest = run.result["benchmark_digest"]
    if digest != release.benchmark_digest:
        deviations.append(f"code is not benchmark {release.version}'s (benchmark digest {short_digest(digest)}, published "
                          f"{short_digest(release.benchmark_digest)})")
    if release.is_current:
        return deviations + config_deviations(run, load_config(rules.BENCHMARKS[run.benchmark].config))
    if run.result["fixed_config_digest"] != published.fixed_config_digest:
        deviations.append(f"{CONFIG} changes fixed keys of benchmark {release.version}'s canonical config "
                          "(fixed_config_digest differs)")
    return deviations


def short_digest(digest: str) -> str:
    """A digest's labels and first 12 hex digits: "sha256:1c0036af3ee1..."."""
    labels, _, digits = digest.rpartition(":")
    return f"{labels}:{digits[:12]}..." if labels else f"{digits[:12]}..."
