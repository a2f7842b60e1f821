"""Dataset fingerprint: which dataset a run trained and validated on.

Prepared and generated datasets carry `manifest.json` (vmb.data.prepare.manifest), whose fingerprint identifies the
data by its sources and preparation parameters; a run records that. A folder without a manifest (hand-made
test data) gets a cheap fallback labelled `unprepared:`, over the split CSVs and each listed file's size.
Neither reads a video byte, so recording the fingerprint never warms the page cache for the next run.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from vmb.data.prepare.manifest import MANIFEST, read_manifest
from vmb.errors import DataError
from vmb.files import sha256_file

UNPREPARED = "unprepared:"


def unprepared_fingerprint(data_dir: str | Path, num_classes: int, path_prefix: str = "") -> str:
    """`unprepared:sha256:...` over train.csv, val.csv and the (relative path, label, size) of every video
    they list, in CSV order: it sees a changed list or a resized file, not a same-size change of bytes."""
    from vmb.data.kinetics import read_split_csv  # here, not at the top: the scorer imports this module

    data_dir = Path(data_dir)
    root = Path(path_prefix) if path_prefix else data_dir
    digest = hashlib.sha256()
    for split in ("train", "val"):
        csv_path = data_dir / f"{split}.csv"
        entries = read_split_csv(csv_path, num_classes)
        digest.update(f"{split}.csv {sha256_file(csv_path)[0]}\n".encode())
        for rel_path, label in entries:
            try:
                size = (root / rel_path).stat().st_size
            except OSError as exc:
                raise DataError(f"{root / rel_path}: cannot read its size ({exc.strerror})") from None
            digest.update(f"{rel_path} {label} {size}\n".encode())
    return f"{UNPREPARED}sha256:{digest.hexdigest()}"


def dataset_fingerprint(data_dir: str | Path, num_classes: int, path_prefix: str = "") -> str:
    """The fingerprint of `data_dir/manifest.json` (checked against its content), or the `unprepared:`
    fallback when the folder has no manifest.

    Raises:
        DataError: an unreadable or inconsistent manifest, or a split CSV that cannot be read.
    """
    if (Path(data_dir) / MANIFEST).is_file():
        return read_manifest(data_dir)["fingerprint"]
    return unprepared_fingerprint(data_dir, num_classes, path_prefix)
