"""Dataset fingerprint: which exact bytes a run trained and validated on."""
from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def dataset_fingerprint(data_dir: str | Path, num_classes: int, path_prefix: str = "") -> str:
    """sha256 over train.csv, val.csv and the content of every video they list, in CSV order.

    It reads every byte, so the trainer computes it after run_stop: reading the files before the timed
    region would warm the page cache for the run.
    """
    from vmb.data.kinetics import read_split_csv  # here, not at the top: the scorer imports this module

    data_dir = Path(data_dir)
    root = Path(path_prefix) if path_prefix else data_dir
    digest = hashlib.sha256()
    for split in ("train", "val"):
        csv_path = data_dir / f"{split}.csv"
        digest.update(f"{split}.csv {file_sha256(csv_path)}\n".encode())
        for rel_path, label in read_split_csv(csv_path, num_classes):
            digest.update(f"{rel_path} {label} {file_sha256(root / rel_path)}\n".encode())
    return "sha256:" + digest.hexdigest()
