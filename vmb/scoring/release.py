"""Benchmark versions: what each released version of VMB publishes, and the rules a run of it is judged by.

A benchmark version (BENCHMARK.VERSION) fixes the work a run does: the timed-path code and the canonical
configs, published as their *benchmark digest* (vmb.record.provenance). Each version has a folder
vmb/scoring/rules/<version>/, as mlperf-logging has compliance_checker/training_X.Y.Z/:

    release.yaml      the published benchmark digest, per benchmark the target and the fixed-config digest
                      of its canonical config, and the convergence rule's parameters
    compliance.yaml   the run-log rules (mlperf-logging's compliance checker format; vmb.scoring.compliance)

The scorer judges a run by the folder of the version the run declares, so a newer scorer keeps scoring runs
of every version it ships a folder for; a version it has no folder for is refused with one line. A change
to the timed path needs a new version: tests/scoring/test_release.py fails while the current code's digest
is not the one the current version publishes. `python -m vmb.scoring.release` prints the release.yaml of the
code it runs, or writes it with `-o FILE` (docs/RELEASES.md: how a release is cut).
"""
from __future__ import annotations

import argparse
import functools
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from vmb import rules
from vmb.config import config_digest, get_defaults, load_config
from vmb.errors import VMBError
from vmb.files import write_text_atomic

RULES_DIR = Path(__file__).resolve().with_name("rules")
RELEASE_FILE = "release.yaml"
COMPLIANCE_FILE = "compliance.yaml"


class UnknownVersionError(VMBError):
    """A run or reference names a benchmark version this scorer has no rules for."""


@dataclass(frozen=True)
class PublishedBenchmark:
    """What a version fixes for one benchmark."""

    target_top1: float
    fixed_config_digest: str  # vmb.config.config_digest of the canonical config without rules.RESOURCE_KEYS


@dataclass(frozen=True)
class Release:
    """One benchmark version's published facts and rules."""

    version: str
    benchmark_digest: str
    benchmarks: dict[str, PublishedBenchmark]
    p_value: float  # the convergence check's one-sided level (vmb.scoring.convergence)
    min_reference_runs: int  # fewer reference epochs than this: convergence not checked
    compliance_rules: Path

    @property
    def is_current(self) -> bool:
        """This is the version the installed code implements (its BENCHMARK.VERSION default)."""
        return self.version == current_version()


def current_version() -> str:
    """The benchmark version the installed code and canonical configs implement."""
    return get_defaults().BENCHMARK.VERSION


def known_versions() -> list[str]:
    """The versions this scorer has rules for, oldest first."""
    return sorted((p.name for p in RULES_DIR.iterdir() if (p / RELEASE_FILE).is_file()),
                  key=lambda v: tuple(int(part) if part.isdigit() else part for part in v.split(".")))


def _malformed(path: Path, what: str) -> VMBError:
    return VMBError(f"{path}: {what} (a damaged VMB installation; reinstall it)")


@functools.lru_cache(maxsize=None)
def load_release(version: str) -> Release:
    """The release of benchmark `version`.

    Raises:
        UnknownVersionError: no folder for `version` (one line naming the known versions).
    """
    folder = RULES_DIR / version
    if not isinstance(version, str) or "/" in version or not (folder / RELEASE_FILE).is_file():
        raise UnknownVersionError(f"benchmark version {version!r} is not one this scorer knows (known: "
                                  f"{', '.join(known_versions())}); score it with the VMB release that made it")
    path = folder / RELEASE_FILE
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        benchmarks = {name: PublishedBenchmark(float(entry["target_top1"]), str(entry["fixed_config_digest"]))
                      for name, entry in data["benchmarks"].items()}
        release = Release(str(data["version"]), str(data["benchmark_digest"]), benchmarks,
                          float(data["convergence"]["p_value"]), int(data["convergence"]["min_reference_runs"]),
                          folder / COMPLIANCE_FILE)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _malformed(path, f"malformed ({type(exc).__name__}: {exc})") from None
    if release.version != version or not 0 < release.p_value < 1 or not math.isfinite(release.p_value):
        raise _malformed(path, f"its version must be {version!r} and 0 < p_value < 1")
    return release


def release_of_code(version: str, p_value: float, min_reference_runs: int) -> dict:
    """release.yaml's content for the code that runs this function, as `version` (for cutting a release)."""
    from vmb.record.provenance import code_provenance

    benchmarks = {}
    for name, benchmark in rules.BENCHMARKS.items():
        canonical = load_config(benchmark.config)
        benchmarks[name] = {"target_top1": canonical.BENCHMARK.TARGET_TOP1,
                            "fixed_config_digest": config_digest(canonical, exclude=rules.RESOURCE_KEYS)}
    return {"version": version, "benchmark_digest": code_provenance()["benchmark_digest"],
            "benchmarks": benchmarks,
            "convergence": {"p_value": p_value, "min_reference_runs": min_reference_runs}}


def main(argv: list[str] | None = None) -> int:
    """`python -m vmb.scoring.release [-o FILE]`: release.yaml for the current code and version, printed or written
    to FILE (after it is computed, so FILE may be the version's own file); the convergence parameters are those
    of the version's folder, if it has one, else MLPerf's (0.05, 2)."""
    parser = argparse.ArgumentParser(description="Publish the current code as its benchmark version's release.yaml.")
    parser.add_argument("-o", "--output", type=Path, help="write it here (default: print it)")
    args = parser.parse_args(argv)
    version = current_version()
    try:
        current = load_release(version)
        p_value, min_runs = current.p_value, current.min_reference_runs
    except UnknownVersionError:
        p_value, min_runs = 0.05, 2
    text = (f"# Benchmark version {version}: written by `python -m vmb.scoring.release` (docs/RELEASES.md); the\n"
            "# benchmark digest covers vmb.record.provenance.TIMED_PATH. Never edit a released version's file.\n"
            + yaml.safe_dump(release_of_code(version, p_value, min_runs), sort_keys=False))
    if args.output is None:
        sys.stdout.write(text)
    else:
        write_text_atomic(args.output, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
