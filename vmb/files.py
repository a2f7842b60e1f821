"""Small file helpers every layer uses: atomic writes and file digests.

A file written with `write_text_atomic` (or named with `temp_name`) is first written under a hidden temporary name
holding TEMP_MARK and renamed into place, so a reader sees the old file or the whole new one, never a part; leftovers
of a killed writer are recognised by TEMP_MARK.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

TEMP_MARK = ".tmp-"
_CHUNK = 1 << 20


def temp_name(path: Path) -> Path:
    """The temporary name `path` is written under by this process before the rename."""
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (temporary name, then rename)."""
    tmp = temp_name(path)
    tmp.write_text(text)
    os.replace(tmp, path)


def sha256_file(path: Path) -> tuple[str, int]:
    """(sha256 hex digest, size in bytes) of the file at `path`, read in 1 MiB blocks."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size
