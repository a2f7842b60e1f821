"""Submission packages: the files of each run, a README, a sha256 manifest, and a tarball.

Layout of a package folder DIR (and DIR.tar.gz, the same folder archived):

    DIR/README.md           what it is and how to verify it
    DIR/MANIFEST.sha256     `<sha256>  <path>` for every other file (`sha256sum -c MANIFEST.sha256` works)
    DIR/runs/<name>/        run_log.txt, result.json, config.yaml, system.json of one run

`tools/score.py DIR` recognises a package by its MANIFEST.sha256, verifies every checksum, and scores the
runs inside. A package is untrusted input: before any file of it is read, `intake_reasons` checks that it holds
plain files and folders only (a symbolic link is never followed, a FIFO or device never opened), each within its
size cap (a run log up to RUN_LOG_CAP, any other file up to FILE_CAP: the scorer parses JSON and YAML whole). Checkpoints and tensorboard files are not packaged: the score never needs them.
"""
from __future__ import annotations

import datetime
import os
import re
import stat
import shutil
import tarfile
from pathlib import Path
from typing import Iterator, Sequence

import vmb
from vmb.files import sha256_file
from vmb.record.schema import RUN_FILES, RUN_LOG
from vmb.scoring.validate import Run, RunFolderError, load_run
from vmb.errors import VMBError

MANIFEST = "MANIFEST.sha256"
README = "README.md"
RUNS_DIR = "runs"
_MANIFEST_LINE = re.compile(r"(?P<digest>[0-9a-f]{64}) [ *](?P<path>.+)")


class PackageError(VMBError):
    """A package cannot be made from the given runs."""


def is_package(path: Path) -> bool:
    try:
        return (path / MANIFEST).is_file()
    except OSError:  # an unreadable folder is reported when it is loaded as a run
        return False


def _readme(runs: dict[str, Run], folder: str) -> str:
    rows = "\n".join(
        f"| {name} | {run.benchmark} | {run.result['status']} | {run.result['time_to_target_s']:.1f} | "
        f"{run.result['n_devices']} {run.device_unit} | {run.result['seed']} |" for name, run in runs.items())
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    return f"""# VMB submission

{len(runs)} run(s) of the Video Model Benchmark, packaged on {today} with vmb {vmb.__version__}.

| run | benchmark | status | time to target (s) | devices | seed |
|---|---|---|---|---|---|
{rows}

## Verify

```bash
python tools/score.py {folder}                                   # checksums, validity checks, times
python tools/score.py {folder} --reference references/SUITE.json # ... and the score
sha256sum -c MANIFEST.sha256                                     # the checksums alone (inside {folder}/)
```

`tools/score.py` checks every file against `{MANIFEST}` (a changed, missing or extra file makes the set
invalid), then each run: its config against the benchmark's canonical config (only resource keys may
differ), its log against VMB's compliance rules, and that result.json agrees with the log.

## Contents

- `{RUNS_DIR}/<run>/run_log.txt`: the MLPerf-format run log (the clock: run_start to run_stop)
- `{RUNS_DIR}/<run>/result.json`: the run's summary
- `{RUNS_DIR}/<run>/config.yaml`: the resolved config
- `{RUNS_DIR}/<run>/system.json`: the system the run used
- `{MANIFEST}`: sha256 of every file above and of this README
"""


def _files(folder: Path) -> list[str]:
    """Every file below `folder`, as sorted POSIX paths relative to it (symbolic links included, not followed)."""
    found = []
    for root, dirs, files in os.walk(folder):
        for name in files + [d for d in dirs if (Path(root) / d).is_symlink()]:
            found.append((Path(root) / name).relative_to(folder).as_posix())
    return sorted(found)


def write_manifest(folder: Path) -> Path:
    """Write MANIFEST.sha256 over every file of `folder` (but itself)."""
    lines = [f"{sha256_file(folder / rel)[0]}  {rel}\n" for rel in _files(folder) if rel != MANIFEST]
    manifest = folder / MANIFEST
    manifest.write_text("".join(lines))
    return manifest


def make_package(run_dirs: Sequence[Path], out_dir: Path) -> Path:
    """Package the runs into `out_dir` and `out_dir`.tar.gz; return the tarball's path.

    Raises:
        PackageError: no runs, a path that is not a finished run folder, two runs with one name, or an
            output that already exists.
    """
    if not run_dirs:
        raise PackageError("no runs to package")
    runs: dict[str, Run] = {}
    for path in map(Path, run_dirs):
        try:
            run = load_run(path)
        except RunFolderError as exc:
            raise PackageError(str(exc)) from None
        name = path.resolve().name
        if name in runs:
            raise PackageError(f"two runs are named {name} ({runs[name].path} and {path}); rename one")
        runs[name] = run
    tarball = out_dir.with_name(out_dir.name + ".tar.gz")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise PackageError(f"{out_dir} already exists and is not empty; choose another -o DIR")
    if tarball.exists():
        raise PackageError(f"{tarball} already exists; remove it or choose another -o DIR")
    try:
        for name, run in runs.items():
            target = out_dir / RUNS_DIR / name
            target.mkdir(parents=True)
            for file in RUN_FILES:
                shutil.copyfile(run.path / file, target / file)
        (out_dir / README).write_text(_readme(runs, out_dir.name))
        write_manifest(out_dir)
        with tarfile.open(tarball, "w:gz") as archive:
            archive.add(out_dir, arcname=out_dir.name)
    except OSError as exc:
        raise PackageError(f"cannot write the package ({exc.strerror or exc}: {exc.filename})") from None
    return tarball


def _read_manifest(manifest: Path) -> tuple[dict[str, str], list[str]]:
    """{path: sha256} of the manifest, and reasons for malformed lines."""
    try:
        text = manifest.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return {}, [f"{MANIFEST}: cannot read it ({exc})"]
    listed, reasons = {}, []
    for number, line in enumerate(text.splitlines(), start=1):
        match = _MANIFEST_LINE.fullmatch(line)
        if not match:
            reasons.append(f"{MANIFEST}:{number}: not a `<sha256>  <path>` line")
        elif match["path"] in listed:
            reasons.append(f"{MANIFEST}:{number}: {match['path']} is listed twice")
        else:
            listed[match["path"]] = match["digest"]
    return listed, reasons


def _sha256_or_none(path: Path) -> str | None:
    try:
        return sha256_file(path)[0]
    except OSError:
        return None


MIB = 1 << 20
RUN_LOG_CAP = 64 * MIB
FILE_CAP = 1 * MIB
_ONLY_PLAIN = "a submission holds plain files and folders only"


def _entries(folder: Path) -> Iterator[tuple[str, os.stat_result]]:
    """(POSIX path relative to `folder`, lstat) of everything below it; a symbolic link is listed, never
    followed."""
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(folder / rel if rel else folder) as entries:
            entries = list(entries)
        for entry in entries:
            path = f"{rel}/{entry.name}" if rel else entry.name
            info = entry.stat(follow_symlinks=False)
            yield path, info
            if stat.S_ISDIR(info.st_mode):
                stack.append(path)


def size_cap(rel: str) -> int:
    """The largest size in bytes the file at `rel` (relative to the submission folder) may have."""
    return RUN_LOG_CAP if Path(rel).name == RUN_LOG else FILE_CAP


def intake_reasons(folder: Path) -> list[str]:
    """Why the scorer must not read `folder` (empty when it may), one line each, naming the entry: a symbolic
    link, something that is neither a plain file nor a folder, a file over its size cap, or no manifest.
    Reads no file's content."""
    try:
        entries = sorted(_entries(folder), key=lambda entry: entry[0])
    except OSError as exc:
        return [f"{folder}: cannot read the folder ({exc.strerror or exc}: {exc.filename})"]
    reasons = []
    for rel, info in entries:
        if stat.S_ISLNK(info.st_mode):
            reasons.append(f"{rel}: a symbolic link, not followed ({_ONLY_PLAIN})")
        elif not stat.S_ISDIR(info.st_mode) and not stat.S_ISREG(info.st_mode):
            reasons.append(f"{rel}: not a plain file ({_ONLY_PLAIN})")
        elif stat.S_ISREG(info.st_mode) and info.st_size > size_cap(rel):
            reasons.append(f"{rel}: {info.st_size / MIB:.1f} MiB, over its size cap ({RUN_LOG_CAP // MIB} MiB for "
                           f"a {RUN_LOG}, {FILE_CAP // MIB} MiB for any other file)")
    if MANIFEST not in (rel for rel, _ in entries):
        reasons.append(f"no {MANIFEST}: not a submission folder (make one with tools/package.py)")
    return [f"{folder}: {reason}" for reason in reasons]


def verify_package(folder: Path) -> list[str]:
    """Reasons why the package's files are not exactly those of its manifest (empty when they are)."""
    listed, reasons = _read_manifest(folder / MANIFEST)
    try:
        present = [rel for rel in _files(folder) if rel != MANIFEST]
    except OSError as exc:
        return reasons + [f"cannot read the package ({exc})"]
    for rel in present:
        path = folder / rel
        if path.is_symlink():
            reasons.append(f"{rel}: a symbolic link (a package holds plain files only)")
        elif rel not in listed:
            reasons.append(f"{rel}: extra file, not in {MANIFEST}")
        elif _sha256_or_none(path) != listed[rel]:
            reasons.append(f"{rel}: checksum mismatch (changed after packaging, or unreadable)")
    reasons += [f"{rel}: missing (listed in {MANIFEST})" for rel in listed if rel not in present]
    return [f"{folder}: {reason}" for reason in reasons]


def collect_runs(paths: Sequence[Path]) -> tuple[list[Path], list[str]]:
    """The run folders to score: each path itself, or the runs inside a package (whose manifest is
    verified); and the reasons a package is not intact."""
    runs, reasons = [], []
    for path in map(Path, paths):
        if not is_package(path):
            runs.append(path)
            continue
        intake = intake_reasons(path)
        if intake:  # never read a file of a package that may make the scorer follow a link or read without end
            reasons += intake
            continue
        reasons += verify_package(path)
        runs_dir = path / RUNS_DIR
        try:
            found = sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.is_symlink())
        except OSError:
            found = []
        if not found:
            reasons.append(f"{path}: a package without runs ({RUNS_DIR}/ is missing or empty)")
        runs += found
    return runs, reasons
