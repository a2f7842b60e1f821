"""The MLPerf-format run log (`run_log.txt`): written with mlperf-logging's mllog on rank 0 only, and read
back by the trainer (to resume the clock) and by the scorer.

Each line is `:::MLLOG {"namespace", "time_ms", "event_type", "key", "value", "metadata"}`.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import time
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
CHECKPOINT = "vmb_checkpoint"  # our own key: a checkpoint of this epoch was written (logged right after)
# Fault injection for resume tests (tests, tools/kill_resume.py): "KEY:N" makes the process kill itself with
# SIGKILL right after writing its N-th KEY event, an exact point for what `kill -9` does at random.
KILL_AFTER_ENV = "VMB_KILL_AFTER"
DECODE_FAILURES = "vmb_decode_failures"  # our own key: training videos replaced in an epoch
SOURCE_DIGEST = "vmb_source_digest"  # our own header key: vmb.record.provenance's digest of the code that ran
CONFIG_DIGEST = "vmb_config_digest"  # our own header key: vmb.config.config_digest of the resolved config


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
        self._kill_key, _, count = os.environ.get(KILL_AFTER_ENV, "").partition(":")
        self._kill_countdown = int(count) if self._kill_key else 0

    def event(self, key: str, value: Any = None, time_ms: int | None = None, **metadata: Any) -> None:
        if self.enabled:
            self._logger.event(key=key, value=value, metadata=metadata or None, time_ms=time_ms)
            self._maybe_kill(key)

    def start(self, key: str, value: Any = None, time_ms: int | None = None, **metadata: Any) -> None:
        if self.enabled:
            self._logger.start(key=key, value=value, metadata=metadata or None, time_ms=time_ms)
            self._maybe_kill(key)

    def end(self, key: str, value: Any = None, time_ms: int | None = None, **metadata: Any) -> None:
        if self.enabled:
            self._logger.end(key=key, value=value, metadata=metadata or None, time_ms=time_ms)
            self._maybe_kill(key)

    def _maybe_kill(self, key: str) -> None:
        """The KILL_AFTER_ENV fault: SIGKILL this process (no cleanup, as `kill -9`) after the N-th `key`."""
        if key == self._kill_key:
            self._kill_countdown -= 1
            if self._kill_countdown == 0:
                os.kill(os.getpid(), signal.SIGKILL)

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


RUN_START = constants.RUN_START
RUN_STOP = constants.RUN_STOP


def effective_evals(events: list[LogEvent]) -> list[LogEvent]:
    """The eval_accuracy events that stand, in order. A `vmb_resume` from the checkpoint of epoch k supersedes
    every evaluation logged before it at an epoch above k: the resumed run repeats that training, and its own
    evaluations replace them (the compliance rules apply the same rule)."""
    kept: list[LogEvent] = []
    for event in events:
        if event.key == constants.EVAL_ACCURACY:
            kept.append(event)
        elif event.key == RESUME and type(event.value) in (int, float):
            kept = [e for e in kept if not _epoch_above(e, event.value)]
    return kept


def _epoch_above(event: LogEvent, epoch: float) -> bool:
    value = event.metadata.get("epoch_num")
    return type(value) not in (int, float) or value > epoch


def drop_cut_line(path: Path) -> bool:
    """Remove a last line left incomplete (no newline: the writer was killed while writing it); True if one was.

    Only the trainer calls this, before appending to the log of the run it resumes."""
    with open(path, "rb+") as handle:
        data = handle.read()
        if not data or data.endswith(b"\n"):
            return False
        handle.truncate(data.rfind(b"\n") + 1)
        return True
