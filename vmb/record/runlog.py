"""The MLPerf-format run log (vmb.record.schema.RUN_LOG) as I/O: written with mlperf-logging's mllog on rank 0
only, and read back by the trainer (to resume the clock) and by the scorer. Its keys and what they mean are in
vmb.record.schema.

Each line is `:::MLLOG {"namespace", "time_ms", "event_type", "key", "value", "metadata"}`.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlperf_logging.mllog.mllog import MLLogger

from vmb.errors import VMBError
from vmb.record.faults import KillAfter

PREFIX = ":::MLLOG "


@dataclass(frozen=True)
class LogEvent:
    """One parsed log line."""

    time_ms: int
    event_type: str
    key: str
    value: Any
    metadata: dict
    line_no: int


class RunLog:
    """Appends events to `path` through mllog; every method is a no-op when `enabled` is False
    (processes other than rank 0)."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.enabled = enabled
        self._logger = None
        if enabled:
            handler = logging.FileHandler(path, mode="a")
            handler.setFormatter(logging.Formatter("%(message)s"))
            pylogger = logging.getLogger(f"vmb.runlog.{path.resolve()}")
            pylogger.propagate = False
            pylogger.setLevel(logging.INFO)
            pylogger.handlers = [handler]
            self._logger = MLLogger(logger=pylogger, default_stack_offset=2)
        self._faults = KillAfter()

    def event(self, key: str, value: Any = None, time_ms: int | None = None, **metadata: Any) -> None:
        if self.enabled:
            self._logger.event(key=key, value=value, metadata=metadata or None, time_ms=time_ms)
            self._faults.logged(key)

    def start(self, key: str, value: Any = None, time_ms: int | None = None, **metadata: Any) -> None:
        if self.enabled:
            self._logger.start(key=key, value=value, metadata=metadata or None, time_ms=time_ms)
            self._faults.logged(key)

    def end(self, key: str, value: Any = None, time_ms: int | None = None, **metadata: Any) -> None:
        if self.enabled:
            self._logger.end(key=key, value=value, metadata=metadata or None, time_ms=time_ms)
            self._faults.logged(key)

    def close(self) -> None:
        if self.enabled:
            for handler in self._logger.logger.handlers:
                handler.close()
            self._logger.logger.handlers = []


def now_ms() -> int:
    """The run log's clock: wall-clock milliseconds since the epoch (run_start and run_stop are read from it)."""
    return int(time.time() * 1000)


class LogFormatError(VMBError):
    """A run-log line is not a valid MLLOG line."""


def read_events(path: Path) -> list[LogEvent]:
    """All MLLOG events of a run log, in file order; other lines are ignored.

    Raises:
        LogFormatError: a `:::MLLOG` line whose JSON is broken or lacks a field (names the line).
    """
    events = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.startswith(PREFIX):
                continue
            try:
                record = json.loads(line[len(PREFIX):])
                if not isinstance(record, dict) or not isinstance(record.get("metadata") or {}, dict):
                    raise ValueError("not a JSON object with an object as metadata")
                events.append(LogEvent(int(record["time_ms"]), record["event_type"], record["key"],
                                       record.get("value"), record.get("metadata") or {}, line_no))
            except (KeyError, TypeError, ValueError) as exc:  # JSONDecodeError is a ValueError
                raise LogFormatError(f"{path}:{line_no}: malformed MLLOG line ({exc})") from None
    return events


def find(events: list[LogEvent], key: str) -> list[LogEvent]:
    return [e for e in events if e.key == key]


def drop_cut_line(path: Path) -> bool:
    """Remove a last line left incomplete (no newline: the writer was killed while writing it); True if one was.

    Only the trainer calls this, before appending to the log of the run it resumes."""
    with open(path, "rb+") as handle:
        data = handle.read()
        if not data or data.endswith(b"\n"):
            return False
        handle.truncate(data.rfind(b"\n") + 1)
        return True
