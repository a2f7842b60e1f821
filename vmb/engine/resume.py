"""Resuming an interrupted run: what it left in OUTPUT_DIR, and which checkpoint may continue it.

The rules (GETTING_STARTED.md, Resume): the run log is the one source of truth and its clock never stops; a
checkpoint is used only with the run log holding its run_start, by the same config and code (the header's
vmb_config_digest and vmb_source_digest) and the same precision; anything else is one line saying what to do.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fvcore.common.config import CfgNode
from mlperf_logging.mllog import constants as C

from vmb.config import config_digest
from vmb.errors import VMBError
from vmb.files import WriteError, cannot_write, io_failure, remove_temp_files
from vmb.record.runlog import drop_cut_line, find, now_ms, read_events
from vmb.record.schema import CONFIG_DIGEST, RESULT, RUN_LOG, SOURCE_DIGEST


@dataclass(frozen=True)
class Interrupted:
    """What an interrupted run left in OUTPUT_DIR: its run_start time, and whether its log ended in a line
    cut short (a kill while it was written; the cut part is removed before the log is appended to)."""

    run_start_ms: int
    cut_line: bool
    digests: dict  # the logged vmb_config_digest and vmb_source_digest: a resume must run the same of both


def prepare_output_dir(out_dir: Path, auto_resume: bool) -> Interrupted | None:
    """Create OUTPUT_DIR and return what an interrupted run left there (None for a new run).

    Refuses a folder that holds a finished run, or an interrupted one when TRAIN.AUTO_RESUME is off; sets
    aside the log of a run that died before run_start (nothing timed happened, so the run starts over);
    removes the temporary files of writes a killed process left (vmb.files.remove_temp_files).
    """
    probe = out_dir / ".write-test"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_temp_files(out_dir)  # first: on a full disk they may hold the space this run needs
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        if io_failure(exc):
            raise WriteError(cannot_write(probe, exc)) from None
        raise VMBError(f"OUTPUT_DIR {out_dir} is not writable ({exc.strerror}); choose another OUTPUT_DIR") from None
    if (out_dir / RESULT).exists():
        raise VMBError(f"OUTPUT_DIR {out_dir} already holds a finished run; choose a new OUTPUT_DIR")
    log_path = out_dir / RUN_LOG
    if not log_path.exists():
        return None
    cut_line = drop_cut_line(log_path)
    events = read_events(log_path)
    if find(events, C.RUN_STOP):
        raise VMBError(f"OUTPUT_DIR {out_dir} already holds a finished run; choose a new OUTPUT_DIR")
    starts = find(events, C.RUN_START)
    if not starts:
        os.replace(log_path, out_dir / f"run_log.before_run_start.{now_ms()}.txt")
        return None
    if not auto_resume:
        raise VMBError(f"OUTPUT_DIR {out_dir} holds an interrupted run; set TRAIN.AUTO_RESUME True to resume it "
                       "(its clock keeps running) or choose a new OUTPUT_DIR")
    digests = {key: [e.value for e in find(events, key)] for key in (CONFIG_DIGEST, SOURCE_DIGEST)}
    return Interrupted(starts[0].time_ms, cut_line, digests)


def check_same_run(interrupted: Interrupted, cfg: CfgNode, source_digest: str) -> None:
    """A resume runs the config and the code the run started with (the header logged them), else one line."""
    if interrupted.digests[CONFIG_DIGEST] != [config_digest(cfg)]:
        raise VMBError(f"OUTPUT_DIR {cfg.OUTPUT_DIR} holds an interrupted run of another config (its {RUN_LOG} "
                       "logged another vmb_config_digest); resume with the same command and KEY VALUE overrides, "
                       "or choose a new OUTPUT_DIR")
    if interrupted.digests[SOURCE_DIGEST] != [source_digest]:
        raise VMBError(f"OUTPUT_DIR {cfg.OUTPUT_DIR} holds an interrupted run of other code (its {RUN_LOG} logged "
                       f"another vmb_source_digest than this vmb's {source_digest[:19]}...); resume with the code it "
                       "started with, or choose a new OUTPUT_DIR")
