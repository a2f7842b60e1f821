"""User-facing errors: each carries a one-line message that names the file or key and what to do; `exit_on_error`
turns them into the commands' `error: <one line>` and exit status 2."""
from __future__ import annotations

import sys
from typing import Callable


class VMBError(Exception):
    """Base class for errors shown to the user as one line, without a traceback."""


class ConfigError(VMBError):
    """A config file, key or value is wrong."""


class DataError(VMBError):
    """A data directory, CSV line or video is missing or unreadable."""


def one_line(exc: BaseException) -> str:
    """The user-facing line of an error; for an error re-raised from a DataLoader worker, the original
    message rather than the worker's traceback."""
    text = str(exc).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return text.splitlines()[0] if text else type(exc).__name__


def exit_on_error(fn: Callable[..., int | None]) -> Callable[..., int]:
    """Run `fn`; a VMBError becomes `error: <one line>` on stderr and exit status 2."""

    def wrapper(*args, **kwargs) -> int:
        try:
            return fn(*args, **kwargs) or 0
        except VMBError as exc:
            print(f"error: {one_line(exc)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted: rerun the same command to resume from the last checkpoint", file=sys.stderr)
            return 130

    return wrapper
