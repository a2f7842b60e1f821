"""Untimed pre-flight: check the dataset before run_start, so bad input stops a run before its clock starts.

MLPerf lets initialisation happen outside the timed region; a missing, empty or unreadable video found here
costs seconds, found in epoch 37 it costs the run. Every file listed in train.csv / val.csv must exist and
open as a video with PyAV. When the folder has a `manifest.json` (prepared or generated data), the CSVs must
list exactly the manifest's clips and each file must have the manifest's size; with DATA.FINGERPRINT set, the
manifest must exist and carry that fingerprint.

Only container headers are read (av.open: the header and the first packets FFmpeg probes), never a clip's
frames as a whole, and no page cache is dropped or warmed on purpose (docs/DATA.md, "Page cache").
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av

from vmb.data.kinetics import missing_data_dir, read_split_csv
from vmb.data.prepare.manifest import MANIFEST, read_manifest
from vmb.errors import DataError

SPLITS = ("train", "val")
NAMED = 3  # bad files named in the error line
THREADS = 16  # opening files is I/O-bound (PyAV releases the GIL), and storage may be remote


def probe_video(path: Path) -> tuple[int | None, str | None]:
    """(size in bytes or None, why the file is not a usable video or None), reading headers only."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None, "missing"
    except OSError as exc:
        return None, f"cannot stat: {exc.strerror}"
    if size == 0:
        return size, "zero bytes"
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return size, "no video stream"
    except (av.FFmpegError, OSError) as exc:
        return size, f"cannot be opened: {exc.strerror or type(exc).__name__}"
    return size, None


def _listed(data_dir: Path, num_classes: int) -> list[tuple[str, str, int]]:
    """(split, relative path, label) of every video train.csv and val.csv list, in file order."""
    return [(split, rel, label) for split in SPLITS
            for rel, label in read_split_csv(data_dir / f"{split}.csv", num_classes)]


def _manifest(data_dir: Path, fingerprint: str) -> dict | None:
    """The checked manifest (None if there is none and DATA.FINGERPRINT does not ask for one)."""
    if not fingerprint and not (data_dir / MANIFEST).is_file():
        return None
    manifest = read_manifest(data_dir)  # raises for a missing or inconsistent manifest
    if fingerprint and manifest["fingerprint"] != fingerprint:
        raise DataError(f"{data_dir / MANIFEST}: fingerprint {manifest['fingerprint']} is not DATA.FINGERPRINT "
                        f"{fingerprint} (a different dataset or preparation); {_fix(manifest)}")
    return manifest


def _fix(manifest: dict | None) -> str:
    """What to do about bad data."""
    if manifest is None:
        return "replace those files or remove them from the CSVs"
    if manifest["kind"] == "synthetic":
        return "re-run tools/make_synthetic.py"
    return "re-run tools/prepare_kinetics20.py"


def _show(entries: list[tuple[str, str, int]]) -> str:
    """The first few (split, path, label) entries, for an error line."""
    return ", ".join(f"{path} ({split}, label {label})" for split, path, label in entries[:NAMED])


def _compare_lists(data_dir: Path, listed: list[tuple[str, str, int]], clips: dict[tuple[str, str, int], int],
                   fix: str) -> None:
    """The CSVs list exactly the manifest's (split, path, label) entries (`clips`)."""
    extra = [entry for entry in listed if entry not in clips]
    absent = sorted(set(clips) - set(listed))
    if extra or absent:
        parts = [f"{len(extra)} CSV entries not in it, first: {_show(extra)}"] if extra else []
        parts += [f"{len(absent)} of its clips not in the CSVs, first: {_show(absent)}"] if absent else []
        raise DataError(f"{data_dir}: train.csv/val.csv do not match {MANIFEST} ({'; '.join(parts)}); {fix}")


def check_dataset(data_dir: str | Path, num_classes: int, path_prefix: str = "", fingerprint: str = "") -> int:
    """Check the dataset in `data_dir` as described in the module docstring; return the number of videos.

    Raises:
        DataError: one line naming the folder, the count of bad files and the first few with their reason.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise missing_data_dir(data_dir)
    listed = _listed(data_dir, num_classes)
    manifest = _manifest(data_dir, fingerprint)
    clips = None
    if manifest is not None:
        clips = {(c["split"], c["path"], c["label_index"]): c["bytes"] for c in manifest["clips"]}
        _compare_lists(data_dir, listed, clips, _fix(manifest))
    root = Path(path_prefix) if path_prefix else data_dir
    paths = [root / rel for _, rel, _ in listed]
    with ThreadPoolExecutor(THREADS) as pool:
        probes = list(pool.map(probe_video, paths))
    bad = []
    for entry, path, (size, problem) in zip(listed, paths, probes):
        if problem is None and clips is not None and size != clips[entry]:
            problem = f"{size} bytes, {MANIFEST} says {clips[entry]}"
        if problem is not None:
            bad.append(f"{path} ({problem})")
    if bad:
        raise DataError(f"{data_dir}: {len(bad)} of {len(listed)} listed videos cannot be used, first: "
                        f"{', '.join(bad[:NAMED])}; {_fix(manifest)}")
    return len(listed)
