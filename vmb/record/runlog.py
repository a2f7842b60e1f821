"""The MLPerf-format run log (`run_log.txt`): written with mlperf-logging's mllog on rank 0 only, and read
back by the trainer (to resume the clock) and by the scorer.

Each line is `:::MLLOG {"namespace", "time_ms", "event_type", "key", "value", "metadata"}`.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlperf_logging.mllog.mllog import MLLogger
from mlperf_logging.mllog import constants

from vmb.errors import VMBError

PREFIX = ":::MLLOG "
# The files of a run folder (OUTPUT_DIR), written by the trainer and read by the scorer.
RUN_LOG, RESULT, CONFIG, SYSTEM = "run_log.txt", "result.json", "config.yaml", "system.json"
RUN_FILES = (RUN_LOG, RESULT, CONFIG, SYSTEM)
RESUME = "vmb_resume"  # our own key: the run was restarted from a checkpoint; the clock kept running
DECODE_FAILURES = "vmb_decode_failures"  # our own key: training videos replaced in an epoch


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

    def event(self, key: str, value: Any = None, time_ms: int | None = None, **metadata: Any) -> None:
        if self.enabled:
            self._logger.event(key=key, value=value, metadata=metadata or None, time_ms=time_ms)

    def start(self, key: str, value: Any = None, time_ms: int | None = None, **metadata: Any) -> None:
        if self.enabled:
            self._logger.start(key=key, value=value, metadata=metadata or None, time_ms=time_ms)

    def end(self, key: str, value: Any = None, time_ms: int | None = None, **metadata: Any) -> None:
        if self.enabled:
            self._logger.end(key=key, value=value, metadata=metadata or None, time_ms=time_ms)

    def close(self) -> None:
        if self.enabled:
            for handler in self._logger.logger.handlers:
                handler.close()
            self._logger.logger.handlers = []


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


RUN_START = constants.RUN_START
RUN_STOP = constants.RUN_STOP
