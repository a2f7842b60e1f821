"""The Kinetics-400 source copy (CVDF layout): its annotation CSVs, its clip files, and the Kinetics20 classes.

A CVDF copy holds ``annotations/{train,val}.csv`` (header ``label,youtube_id,time_start,time_end,split``,
sometimes with more columns such as ``is_cc``) and one file per clip named
``{youtube_id}_{time_start:06d}_{time_end:06d}.{mp4,webm,mkv}``, flat or in per-class folders.
"""
from __future__ import annotations

import csv
import dataclasses
import os
import re
from pathlib import Path

from vmb.errors import DataError

# The first 20 Kinetics-400 classes in alphabetical order, spelled as in the official annotations.
# The label index of a class is its position here (and its line in data/kinetics20/classes.txt).
CLASSES: tuple[str, ...] = (
    "abseiling", "air drumming", "answering questions", "applauding", "applying cream",
    "archery", "arm wrestling", "arranging flowers", "assembling computer", "auctioning",
    "baby waking up", "baking cookies", "balloon blowing", "bandaging", "barbequing",
    "bartending", "beatboxing", "bee keeping", "belly dancing", "bench pressing",
)
SPLITS = ("train", "val")
REQUIRED_COLUMNS = ("label", "youtube_id", "time_start", "time_end")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv")
_YOUTUBE_ID = re.compile(r"[A-Za-z0-9_-]+")


@dataclasses.dataclass(frozen=True)
class Annotation:
    """One well-formed annotation row; `split` is the file it came from, `line` its line in that file."""

    split: str
    label: str
    youtube_id: str
    time_start: int
    time_end: int
    line: int

    @property
    def clip_id(self) -> str:
        """The clip's file stem in the CVDF copy."""
        return f"{self.youtube_id}_{self.time_start:06d}_{self.time_end:06d}"


def class_folder(label: str) -> str:
    """Folder name of a class in the prepared dataset (no spaces: the trainer's CSVs split on whitespace)."""
    return label.replace(" ", "_")


def annotation_path(k400: Path, split: str) -> Path:
    return k400 / "annotations" / f"{split}.csv"


def read_annotations(path: Path, split: str) -> tuple[list[Annotation], list[tuple[int, str]]]:
    """Parse one annotation CSV into its well-formed rows and its malformed rows' (line number, what is wrong).

    A row is malformed if it has fewer or more fields than the header, an empty label, a YouTube id with
    characters other than letters, digits, '-' and '_', or times that are not integers with start < end.
    Columns beyond the required ones (split, is_cc, ...) are ignored.

    Raises:
        DataError: the file is missing, not UTF-8, not CSV, or its header lacks a required column.
    """
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found (--k400 must be a Kinetics-400 copy with "
                        "annotations/train.csv and annotations/val.csv)")
    rows, malformed = [], []
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, restkey="\0extra")
            header = [name.strip() for name in reader.fieldnames or []]
            missing = [name for name in REQUIRED_COLUMNS if name not in header]
            if missing:
                raise DataError(f"{path}: header lacks column(s) {', '.join(missing)} (expected "
                                f"{','.join(REQUIRED_COLUMNS)},split as in the CVDF Kinetics-400 annotations)")
            reader.fieldnames = header
            for row in reader:
                try:
                    rows.append(_parse_row(row, split, reader.line_num))
                except ValueError as exc:
                    malformed.append((reader.line_num, str(exc)))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason}); save the annotations as UTF-8") from None
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: not a CSV file ({exc})") from None
    return rows, malformed


def _parse_row(row: dict, split: str, line: int) -> Annotation:
    """The row as an Annotation; ValueError says why it is malformed."""
    if "\0extra" in row or any(row[name] is None for name in REQUIRED_COLUMNS):
        raise ValueError("more or fewer fields than the header")
    label, youtube_id = row["label"].strip(), row["youtube_id"].strip()
    if not label:
        raise ValueError("empty label")
    if not _YOUTUBE_ID.fullmatch(youtube_id):
        raise ValueError(f"youtube_id {youtube_id!r} is not letters, digits, '-' and '_'")
    try:
        start, end = int(row["time_start"]), int(row["time_end"])
    except ValueError:
        raise ValueError(f"times {row['time_start']!r}, {row['time_end']!r} are not integers") from None
    if not 0 <= start < end:
        raise ValueError(f"times {start}, {end} do not satisfy 0 <= time_start < time_end")
    return Annotation(split, label, youtube_id, start, end, line)


def index_sources(k400: Path, exclude: Path | None = None) -> dict[str, Path]:
    """Map the file stem of every clip under `k400` (any depth) to its path, walking the tree once.

    Hidden files and folders, and the folder `exclude` (the prepared output, if it lies inside the copy), are
    not searched. Folders and files are visited in sorted order, and the first file with a given stem wins,
    so the choice among duplicates does not depend on the file system.
    """
    skip = exclude.resolve() if exclude is not None else None
    index: dict[str, Path] = {}
    for folder, subfolders, files in os.walk(k400, followlinks=True):
        subfolders[:] = sorted(d for d in subfolders
                               if not d.startswith(".") and (skip is None or Path(folder, d).resolve() != skip))
        for name in sorted(files):
            stem, suffix = os.path.splitext(name)
            if suffix.lower() in VIDEO_SUFFIXES and not name.startswith("."):
                index.setdefault(stem, Path(folder, name))
    return index
