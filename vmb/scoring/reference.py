"""Reference times: JSON files under references/ that scores are measured against.

A reference holds one entry per benchmark: the reference time to target t_ref_s (the olympic mean, or
the provisional mean, of valid runs), the devices it used, the target, the dataset fingerprint, the fixed
config digest and the source digest of the code it was measured with, the epochs to target of its runs
(for the convergence check), the hardware, the date, and its provenance (which runs, which command).
`python tools/score.py --make-reference RUNS -o FILE` writes one from a valid set of closed-division runs.
"""
from __future__ import annotations

import datetime
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fvcore.common.config import CfgNode

import vmb
from vmb import rules
from vmb.config import config_digest
from vmb.reporting import system_line
from vmb.errors import VMBError
from vmb.scoring.score import DEVICE_UNITS

if TYPE_CHECKING:
    from vmb.scoring.assess import Assessment

FORMAT = "vmb-reference/2"  # /2 added source_digest and epochs_to_target


class ReferenceFileError(VMBError):
    """A reference file is missing or malformed, or cannot be made."""


@dataclass(frozen=True)
class ReferenceEntry:
    """The reference for one benchmark."""

    benchmark: str
    t_ref_s: float
    n_devices_ref: int
    device_unit: str
    target_top1: float
    dataset_fingerprint: str
    fixed_config_digest: str
    source_digest: str  # vmb.record.provenance's digest of the code the reference runs ran
    epochs_to_target: tuple[float, ...] | None  # of the runs that reached the target; None: not recorded
    hardware: str
    date: str
    provisional: bool
    provenance: dict


@dataclass(frozen=True)
class Reference:
    path: Path
    entries: dict[str, ReferenceEntry]


def _field(entry: dict, key: str, kind: type, where: str) -> Any:
    value = entry.get(key)
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        name = {float: "a number", int: "an integer", str: "a string", bool: "true or false",
                dict: "a JSON object"}[kind]
        raise ReferenceFileError(f"{where}: {key} must be {name}, got {value!r}")
    return value


def _epochs(entry: dict, where: str) -> tuple[float, ...] | None:
    value = entry.get("epochs_to_target")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                              and math.isfinite(v) and v > 0 for v in value):
        raise ReferenceFileError(f"{where}: epochs_to_target must be a list of positive numbers, got {value!r}")
    return tuple(float(v) for v in value)


def _entry(name: str, data: Any, where: str) -> ReferenceEntry:
    if name not in rules.BENCHMARKS:
        raise ReferenceFileError(f"{where}: unknown benchmark (known: {', '.join(rules.BENCHMARKS)})")
    if not isinstance(data, dict):
        raise ReferenceFileError(f"{where}: must be a JSON object")
    entry = ReferenceEntry(
        benchmark=name,
        t_ref_s=float(_field(data, "t_ref_s", float, where)),
        n_devices_ref=_field(data, "n_devices_ref", int, where),
        device_unit=_field(data, "device_unit", str, where),
        target_top1=float(_field(data, "target_top1", float, where)),
        dataset_fingerprint=_field(data, "dataset_fingerprint", str, where),
        fixed_config_digest=_field(data, "fixed_config_digest", str, where),
        source_digest=_field(data, "source_digest", str, where),
        epochs_to_target=_epochs(data, where),
        hardware=_field(data, "hardware", str, where),
        date=_field(data, "date", str, where),
        provisional=_field(data, "provisional", bool, where),
        provenance=_field(data, "provenance", dict, where),
    )
    if entry.t_ref_s <= 0 or entry.n_devices_ref < 1:
        raise ReferenceFileError(f"{where}: t_ref_s must be positive and n_devices_ref at least 1")
    if entry.device_unit not in DEVICE_UNITS:
        raise ReferenceFileError(f"{where}: device_unit must be one of {', '.join(DEVICE_UNITS)}")
    return entry


def load_reference(path: Path) -> Reference:
    """Read and validate a reference file.

    Raises:
        ReferenceFileError: one line naming the file and the field that is wrong.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReferenceFileError(f"{path}: cannot read the reference ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReferenceFileError(f"{path}: not valid JSON ({exc})") from None
    found = data.get("format") if isinstance(data, dict) else None
    if isinstance(found, str) and found.startswith("vmb-reference/") and found != FORMAT:
        raise ReferenceFileError(f"{path}: reference format {found} is not {FORMAT} (it lacks source_digest and "
                             "epochs_to_target); remake it: python tools/score.py --make-reference RUNS -o FILE")
    if found != FORMAT:
        raise ReferenceFileError(f"{path}: not a VMB reference (needs \"format\": \"{FORMAT}\")")
    benchmarks = data.get("benchmarks")
    if not isinstance(benchmarks, dict) or not benchmarks:
        raise ReferenceFileError(f"{path}: \"benchmarks\" must map benchmark names to entries")
    return Reference(path, {name: _entry(name, entry, f"{path}: benchmarks.{name}")
                            for name, entry in benchmarks.items()})


def check_reference_entry(entry: ReferenceEntry, canonical: CfgNode) -> list[str]:
    """Reasons why `entry` does not fit the benchmark's current canonical config (a stale reference)."""
    reasons = []
    if entry.target_top1 != canonical.BENCHMARK.TARGET_TOP1:
        reasons.append(f"the reference's target {entry.target_top1} is not the benchmark's target "
                       f"{canonical.BENCHMARK.TARGET_TOP1}")
    if entry.fixed_config_digest != config_digest(canonical, exclude=rules.RESOURCE_KEYS):
        reasons.append("the reference was measured with a different canonical config (fixed_config_digest)")
    return reasons


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
    digests = list(dict.fromkeys(r.result["source_digest"] for r in runs))
    if len(digests) > 1:
        raise ReferenceFileError(f"the runs ran {len(digests)} different codes (source_digest {', '.join(digests)}); "
                             "all runs of a reference must run the same code")
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
            "source_digest": runs[0].result["source_digest"],
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


def write_reference(data: dict, path: Path) -> None:
    """Write a reference file; never overwrites one."""
    if path.exists():
        raise ReferenceFileError(f"{path} already exists; choose another -o FILE or remove it first")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        raise ReferenceFileError(f"cannot write {path} ({exc.strerror or exc})") from None
