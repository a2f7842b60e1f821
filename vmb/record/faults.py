"""Fault injection for the resume tests (tests/, benchmarks/kill_resume.py), by environment variable; without
them nothing happens.

- `VMB_KILL_AFTER=KEY:N[:SIGNAL]`: the process that writes the run log sends itself SIGNAL (default SIGKILL, as
  `kill -9`: no cleanup) right after writing its N-th KEY event, an exact point for what a kill does at random;
  e.g. `vmb_checkpoint:1:SIGTERM` is a preemption right after the first checkpoint.
- `VMB_FAIL_WRITE=NAME:N`: the N-th write in this process of a file named NAME (an atomic write of
  vmb.files, or an append to the run log) fails with OSError(ENOSPC) as on a full disk, after an atomic
  write's temporary file was written and before it is renamed into place.
"""
from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

KILL_AFTER_ENV = "VMB_KILL_AFTER"
FAIL_WRITE_ENV = "VMB_FAIL_WRITE"

_writes: dict[str, int] = {}  # file name -> writes so far in this process (only the one VMB_FAIL_WRITE names)


class KillAfter:
    """The countdown `VMB_KILL_AFTER` asks for (none when it is unset)."""

    def __init__(self) -> None:
        self.key, _, rest = os.environ.get(KILL_AFTER_ENV, "").partition(":")
        count, _, name = rest.partition(":")
        self.countdown = int(count) if self.key else 0
        self.signal = signal.Signals[name] if name else signal.SIGKILL

    def logged(self, key: str) -> None:
        """`key` was just written: send this process the signal if it is the N-th."""
        if key == self.key:
            self.countdown -= 1
            if self.countdown == 0:
                os.kill(os.getpid(), self.signal)


def fail_write(path: Path) -> None:
    """`path` is being written: raise OSError(ENOSPC) if this is the N-th write `VMB_FAIL_WRITE` names."""
    name, _, count = os.environ.get(FAIL_WRITE_ENV, "").partition(":")
    if path.name != name:
        return
    _writes[name] = _writes.get(name, 0) + 1
    if _writes[name] == int(count):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
