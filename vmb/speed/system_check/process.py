"""How a cell ends and how it runs a command.

A cell returns its figures or raises `NotRun` (it cannot run here), `CellFailed` (it ran and failed; the last lines
of its output kept) or `CellTimeout` (its command ran past its timeout). `run_command` runs a command from the
repository root in its own process group, its output to a log file; past its timeout the command gets SIGINT, then
its whole group SIGKILL after a grace period, and CellTimeout is raised; its leftover processes are killed in every
case.
"""
from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

REPO_ROOT = Path(__file__).resolve().parents[3]
TAIL_LINES = 20  # output lines a failed cell keeps


class NotRun(Exception):
    """The cell cannot run here; the message is the reason."""


class CellFailed(Exception):
    """The cell ran and failed: `tail` holds the last lines of its output, `figures` what it measured anyway."""

    def __init__(self, message: str, tail: Sequence[str] = (), figures: dict | None = None) -> None:
        super().__init__(message)
        self.tail, self.figures = list(tail), figures or {}


class CellTimeout(CellFailed):
    """The cell's command ran past its timeout and was stopped."""


@dataclass
class Finished:
    """A command that ended by itself: its exit status and the last lines of its output."""

    returncode: int
    tail: list[str]


def tail_lines(path: Path, count: int = TAIL_LINES) -> list[str]:
    """The last `count` non-empty lines of a log file (progress bars' carriage returns split lines)."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return []
    return [line.rstrip() for line in text.splitlines() if line.strip()][-count:]


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # the group has no process left
        pass


def _stop(process: subprocess.Popen, grace_s: float) -> None:
    """SIGINT to the command (the speed tools and pytest then write what they measured), then SIGKILL to its whole
    process group once it has exited or after `grace_s`."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    _kill_group(process.pid)
    process.wait()


def run_command(command: Sequence[str], timeout_s: float, log_path: Path, grace_s: float) -> Finished:
    """Run `command` from the repository root in its own process group, output (stdout and stderr) to `log_path`.

    Returns when it ends by itself (any exit status). Past `timeout_s` it is stopped (`_stop`) and CellTimeout
    raised; on any other exception here (Ctrl-C) it is stopped too and the exception goes on. Leftover processes of
    its group (e.g. data-loader workers) are killed in every case."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(list(command), cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        try:
            returncode = process.wait(timeout=max(0.0, timeout_s))
        except subprocess.TimeoutExpired:
            _stop(process, grace_s)
            raise CellTimeout(f"stopped after its timeout of {timeout_s:.0f} s", tail_lines(log_path)) from None
        except BaseException:
            _stop(process, min(grace_s, 2.0))
            raise
        _kill_group(process.pid)
    return Finished(returncode, tail_lines(log_path))
