"""The MLPerf-format run log (vmb.record.schema.RUN_LOG) as I/O: written with mlperf-logging's mllog on rank 0
only, and read back by the trainer (to resume the clock) and by the scorer. Its keys and what they mean are in
vmb.record.schema.

Each line is `:::MLLOG {"namespace", "time_ms", "event_type", "key", "value", "metadata"}`, appended and
flushed as it is logged. An append that fails on a full or failing disk is a vmb.files.WriteError (one line:
the log, the reason, the free space), not logging's print-and-continue, and the log takes no more lines: what
reached the disk is whole lines, and perhaps a last one cut short, which the resume removes (`drop_cut_line`).
"""
from __future__ import annotations

import json
import logging
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlperf_logging.mllog.mllog import MLLogger

from vmb.errors import VMBError
from vmb.files import WriteError, cannot_write, io_failure
from vmb.record.faults import KillAfter, fail_write

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


class _AppendHandler(logging.FileHandler):
    """Appends each formatted line to the file and flushes it. The first write that fails is kept in `error`, and
    the file takes no more lines: logging's own handlers print a traceback and go on, and mllog swallows what a
    handler raises, so the caller checks `error` after each event."""

    error: OSError | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.error is not None:
            return
        try:
            fail_write(Path(self.baseFilename))  # fault injection for the tests (vmb.record.faults)
            self.stream.write(self.format(record) + self.terminator)
            self.flush()
        except OSError as exc:
            self.error = exc


class RunLog:
    """Appends events to `path` through mllog; every method is a no-op when `enabled` is False
    (processes other than rank 0)."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.enabled, self.path = enabled, path
        self._logger = None
        if enabled:
            self._handler = _AppendHandler(path, mode="a")
            self._handler.setFormatter(logging.Formatter("%(message)s"))
            pylogger = logging.getLogger(f"vmb.runlog.{path.resolve()}")
            pylogger.propagate = False
            pylogger.setLevel(logging.INFO)
            pylogger.handlers = [self._handler]
            # the source mllog records for each line: the caller of event/start/end (through _write)
            self._logger = MLLogger(logger=pylogger, default_stack_offset=3)
        self._faults = KillAfter()

    def event(self, key: str, value: Any = None, time_ms: int | None = None, **metadata: Any) -> None:
        if self.enabled:
            self._write(self._logger.event, key, value, time_ms, metadata)

    def start(self, key: str, value: Any = None, time_ms: int | None = None, **metadata: Any) -> None:
        if self.enabled:
            self._write(self._logger.start, key, value, time_ms, metadata)

    def end(self, key: str, value: Any = None, time_ms: int | None = None, **metadata: Any) -> None:
        if self.enabled:
            self._write(self._logger.end, key, value, time_ms, metadata)

    def _write(self, log, key: str, value: Any, time_ms: int | None, metadata: dict) -> None:
        """Append one line with mllog's `log` (event, start or end); a full or failing disk is a WriteError, and
        the log is closed."""
        log(key=key, value=value, metadata=metadata or None, time_ms=time_ms)
        error = self._handler.error
        if error is not None:
            self.close()
            if io_failure(error) is None:
                raise error
            raise WriteError(cannot_write(self.path, error)) from None
        self._faults.logged(key)

    def close(self) -> None:
        """Close the file; after a failed append, what its buffer still holds is dropped if it cannot be written."""
        if self.enabled:
            self.enabled = False
            for handler in self._logger.logger.handlers:
                with suppress(OSError):
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
