"""Which code a run ran: vmb's version, two digests of its files, and the git commit when the package is a git
checkout.

- The *benchmark digest* covers the benchmark's timed path, the files that decide the work a run does
  (TIMED_PATH: the modules `tools/run_net.py` imports, the decoding backends it loads on demand, and the
  canonical configs). A benchmark version (BENCHMARK.VERSION) publishes it (vmb/scoring/rules/<version>/), and
  a closed-division run must have its version's digest. The scorer, the speed tools, reports and docs are
  outside it, so fixing them leaves every earlier run valid.
- The *source digest* covers every *.py and *.yaml of the package and every canonical config: what exactly
  ran, for the record and for resume (a run resumes only with the code it started with).

Both are the same for an editable checkout and a wheel install of the same files: the package's files are
named `vmb/<path>` and the canonical configs `configs/<path>`, wherever vmb.rules.CONFIG_DIR finds them (the
repository's configs/ or the installed vmb/configs/).
"""
from __future__ import annotations

import functools
import hashlib
import subprocess
from pathlib import Path, PurePosixPath

import vmb
from vmb import rules
from vmb.files import sha256_file

PACKAGE_DIR = Path(vmb.__file__).resolve().parent
SOURCE_SUFFIXES = (".py", ".yaml")
# The timed path, as patterns over source_files()'s names (pathlib's match: `*` stays within one folder).
# tests/scoring/test_release.py derives the modules run_net imports from the import graph and fails when a
# pattern misses one. vmb/__init__.py is left out: it holds only the package version, recorded as vmb_version.
TIMED_PATH = (
    "vmb/cli/__init__.py", "vmb/cli/run_net.py", "vmb/cli/common.py",  # the command and its options
    "vmb/rules.py", "vmb/backends.py", "vmb/errors.py", "vmb/files.py", "vmb/launch.py",
    "vmb/config/defaults_*.py", "vmb/config/load.py", "vmb/config/__init__.py",
    "vmb/data/*.py",  # the runtime input path, every decoding backend included
    "vmb/data/prepare/__init__.py", "vmb/data/prepare/formats.py",  # the prepared format
    "vmb/data/prepare/manifest.py",  # the manifest check
    "vmb/data/prepare/synthetic.py", "vmb/data/prepare/synthetic_render.py",  # the smoke data a run makes
    "vmb/models/build.py", "vmb/models/__init__.py",
    "vmb/engine/*.py",
    "vmb/record/*.py",  # the run log, result.json and system.json writers
    "configs/*.yaml", "configs/smoke/*.yaml",  # the canonical configs (configs/dryrun/ is not a benchmark)
)
NOT_TIMED = ("vmb/engine/multiview.py",)  # tools/test_net.py's multi-view testing of a checkpoint, after the run
_GIT_TIMEOUT_S = 10


def source_files(package_dir: Path = PACKAGE_DIR, config_dir: Path = rules.CONFIG_DIR) -> dict[str, Path]:
    """name -> file for every *.py and *.yaml of the package (`vmb/...`, __pycache__ skipped) and every *.yaml
    of the canonical configs (`configs/...`); a config folder inside the package is counted as configs only."""
    package_dir, config_dir = package_dir.resolve(), config_dir.resolve()
    files = {}
    for path in sorted(package_dir.rglob("*")):
        if (path.suffix in SOURCE_SUFFIXES and path.is_file() and "__pycache__" not in path.parts
                and not path.is_relative_to(config_dir)):
            files[f"vmb/{path.relative_to(package_dir).as_posix()}"] = path
    for path in sorted(config_dir.rglob("*.yaml")):
        if path.is_file():
            files[f"configs/{path.relative_to(config_dir).as_posix()}"] = path
    return files


def benchmark_files(files: dict[str, Path]) -> dict[str, Path]:
    """The entries of `files` (source_files()'s) on the timed path (TIMED_PATH, less NOT_TIMED)."""
    return {name: path for name, path in files.items()
            if name not in NOT_TIMED and any(_matches(name, pattern) for pattern in TIMED_PATH)}


def _matches(name: str, pattern: str) -> bool:
    """`name` matches `pattern` whole, folder by folder (PurePath.match alone anchors only at the right)."""
    return len(PurePosixPath(name).parts) == len(PurePosixPath(pattern).parts) and PurePosixPath(name).match(pattern)


def tree_digest(files: dict[str, Path]) -> str:
    """`sha256:<hex>` over the sorted (name, sha256 of the file's bytes) pairs."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name} {sha256_file(files[name])[0]}\n".encode())
    return f"sha256:{digest.hexdigest()}"


def _git(folder: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                              timeout=_GIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):  # no git, or it hangs
        return None
    return proc.stdout if proc.returncode == 0 else None


def git_state(folder: Path, paths: tuple[Path, ...] = ()) -> tuple[str | None, bool | None]:
    """(HEAD commit, whether `paths` have uncommitted changes) when `folder` is the top of a git work tree
    (not merely inside one, as a virtual environment in a checkout is); (None, None) otherwise."""
    top = _git(folder, "rev-parse", "--show-toplevel")
    if top is None or Path(top.strip()).resolve() != folder.resolve():
        return None, None
    commit = _git(folder, "rev-parse", "HEAD")
    status = _git(folder, "status", "--porcelain", "--", *map(str, paths))
    if commit is None or status is None:
        return None, None
    return commit.strip(), bool(status.strip())


@functools.lru_cache(maxsize=None)
def _provenance() -> tuple[str, str, str | None, bool | None]:
    files = source_files()
    commit, dirty = git_state(PACKAGE_DIR.parent, (PACKAGE_DIR, rules.CONFIG_DIR))
    return tree_digest(benchmark_files(files)), tree_digest(files), commit, dirty


def code_provenance() -> dict:
    """{"vmb_version", "benchmark_digest", "source_digest", "git_commit", "git_dirty"} of the running vmb
    (computed once per process); git_dirty covers the package and the canonical configs, the files the source
    digest covers."""
    benchmark, source, commit, dirty = _provenance()
    return {"vmb_version": vmb.__version__, "benchmark_digest": benchmark, "source_digest": source,
            "git_commit": commit, "git_dirty": dirty}
