"""Reference times: JSON files under references/ that scores are measured against (reading and writing them;
vmb.scoring.assess.make_reference builds one).

A reference holds one entry per benchmark: the reference time to target t_ref_s (the olympic mean, or
the provisional mean, of valid runs), the devices it used, the target, the dataset fingerprint, the benchmark
version and benchmark digest of the code it was measured with and its fixed config digest, the epochs to
target of its runs (for the convergence check), the hardware, the date, and its provenance (which runs, which
command). `python tools/score.py --make-reference RUNS -o FILE` writes one from a valid set of closed-division
runs. A reference scores runs of its own benchmark version only.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmb import rules
from vmb.errors import VMBError
from vmb.scoring.release import Release
from vmb.scoring.score import DEVICE_UNITS

FORMAT = "vmb-reference/3"  # /2 added source_digest and epochs_to_target; /3 benchmark_version and benchmark_digest


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
    benchmark_version: str  # BENCHMARK.VERSION of the reference runs: it scores runs of this version only
    benchmark_digest: str  # vmb.record.provenance's digest of the timed path the reference runs ran
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
        benchmark_version=_field(data, "benchmark_version", str, where),
        benchmark_digest=_field(data, "benchmark_digest", str, where),
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
        raise ReferenceFileError(f"{path}: reference format {found} is not {FORMAT} (it lacks benchmark_version "
                                 "and benchmark_digest); remake it: python tools/score.py --make-reference RUNS -o FILE")
    if found != FORMAT:
        raise ReferenceFileError(f"{path}: not a VMB reference (needs \"format\": \"{FORMAT}\")")
    benchmarks = data.get("benchmarks")
    if not isinstance(benchmarks, dict) or not benchmarks:
        raise ReferenceFileError(f"{path}: \"benchmarks\" must map benchmark names to entries")
    return Reference(path, {name: _entry(name, entry, f"{path}: benchmarks.{name}")
                            for name, entry in benchmarks.items()})


def check_reference_entry(entry: ReferenceEntry, release: Release) -> list[str]:
    """Reasons why `entry` is not a reference of `release` (the runs' benchmark version): another version, code
    or canonical config than the version publishes, or another target."""
    if entry.benchmark_version != release.version:
        return [f"the runs are benchmark version {release.version} but the reference is of version "
                f"{entry.benchmark_version}; score them with version {release.version}'s reference"]
    reasons = []
    published = release.benchmarks[entry.benchmark]
    if entry.target_top1 != published.target_top1:
        reasons.append(f"the reference's target {entry.target_top1} is not benchmark {release.version}'s target "
                       f"{published.target_top1}")
    if entry.fixed_config_digest != published.fixed_config_digest:
        reasons.append(f"the reference was measured with another canonical config than benchmark {release.version}'s "
                       "(fixed_config_digest)")
    if entry.benchmark_digest != release.benchmark_digest:
        reasons.append(f"the reference ran other code than benchmark {release.version} publishes (benchmark_digest)")
    return reasons


def write_reference(data: dict, path: Path) -> None:
    """Write a reference file; never overwrites one."""
    if path.exists():
        raise ReferenceFileError(f"{path} already exists; choose another -o FILE or remove it first")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        raise ReferenceFileError(f"cannot write {path} ({exc.strerror or exc})") from None
