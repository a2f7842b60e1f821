"""Fault injection for the resume tests (tests/, benchmarks/kill_resume.py): `VMB_KILL_AFTER=KEY:N` in the
environment makes the process that writes the run log kill itself with SIGKILL right after writing its N-th KEY
event, an exact point for what `kill -9` does at random. Without the variable nothing happens."""
from __future__ import annotations

import os
import signal

KILL_AFTER_ENV = "VMB_KILL_AFTER"


class KillAfter:
    """The countdown `VMB_KILL_AFTER` asks for (none when it is unset)."""

    def __init__(self) -> None:
        self.key, _, count = os.environ.get(KILL_AFTER_ENV, "").partition(":")
        self.countdown = int(count) if self.key else 0

    def logged(self, key: str) -> None:
        """`key` was just written: SIGKILL this process (no cleanup, as `kill -9`) if it is the N-th."""
        if key == self.key:
            self.countdown -= 1
            if self.countdown == 0:
                os.kill(os.getpid(), signal.SIGKILL)
