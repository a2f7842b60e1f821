"""Small file helpers every layer uses: atomic writes, what a failed write says, and file digests.

A file written with `atomic_path` or `write_text_atomic` is first written under a hidden temporary name holding
TEMP_MARK (`temp_name`) and renamed into place, so a reader sees the old file or the whole new one, never a
part. A failed write leaves no temporary file; a killed writer's leftovers are recognised by TEMP_MARK and
removed by `remove_temp_files` when their folder is used again.

A full or failing disk (`io_failure`: ENOSPC, EDQUOT, EFBIG, EIO, EROFS, also when a library wraps the OSError in
another exception, as torch.save does in a RuntimeError) is a `WriteError`: one line naming the file, the
reason and the free space of its filesystem. Any other exception propagates unchanged.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from vmb.errors import VMBError
from vmb.record.faults import fail_write

TEMP_MARK = ".tmp-"
_CHUNK = 1 << 20
# What a full or failing disk makes a write raise: no space, over quota, file too large, I/O error, and the
# read-only remount a filesystem falls back to after errors.
IO_FAILURES = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS})


class WriteError(VMBError):
    """A file could not be written: its disk is full or failing."""


def temp_name(path: Path) -> Path:
    """The temporary name `path` is written under by this process before the rename."""
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")


def remove_temp_files(folder: Path) -> None:
    """Delete the temporary files (`temp_name`) that killed writers left in `folder`."""
    for path in folder.glob(f".*{TEMP_MARK}*"):
        path.unlink(missing_ok=True)


def io_failure(exc: BaseException | None) -> OSError | None:
    """The OSError of a full or failing disk (IO_FAILURES) that `exc` is or was raised from, else None. A chain
    cut with `raise ... from None` is not followed: such an error (a WriteError) already says what failed."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno in IO_FAILURES:
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ if exc.__cause__ is not None or exc.__suppress_context__ else exc.__context__
    return None


def free_space(path: Path) -> str:
    """The free space of the filesystem holding `path` (or its nearest existing parent), e.g. "12 kB"."""
    try:
        free = shutil.disk_usage(next(p for p in (path, *path.parents) if p.exists())).free
    except OSError as exc:  # a failing disk may not answer either
        return f"unknown ({exc.strerror})"
    for unit, size in (("GB", 1e9), ("MB", 1e6)):
        if free >= size:
            return f"{free / size:.1f} {unit}"
    return f"{free / 1e3:.0f} kB"


def cannot_write(path: Path, failure: OSError) -> str:
    """The one line for a write of `path` that failed with `failure` (see `io_failure`)."""
    return (f"cannot write {path}: {failure.strerror} ({free_space(path)} free on its filesystem); free some "
            "space there, then rerun the same command: it resumes")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield the temporary name to write `path` under; rename it into place when the block ends.

    On any exception the temporary file is removed; a full or failing disk becomes a WriteError.
    """
    tmp = temp_name(path)
    try:
        yield tmp
        fail_write(path)  # fault injection for the tests (vmb.record.faults); nothing without VMB_FAIL_WRITE
        os.replace(tmp, path)
    except BaseException as exc:
        with suppress(OSError):  # a failing disk may refuse this too; the next start removes it then
            tmp.unlink(missing_ok=True)
        failure = io_failure(exc)
        if failure is None:
            raise
        raise WriteError(cannot_write(path, failure)) from None


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def sha256_file(path: Path) -> tuple[str, int]:
    """(sha256 hex digest, size in bytes) of the file at `path`, read in 1 MiB blocks."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size
