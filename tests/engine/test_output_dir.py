"""OUTPUT_DIR handling before a run: new, interrupted (resume the clock), finished (refuse), unusable."""
from __future__ import annotations

import json

import pytest

from vmb.engine.resume import prepare_output_dir
from vmb.errors import VMBError
from vmb.record.runlog import RunLog
from vmb.record.schema import RESULT, RUN_LOG, RUN_START, RUN_STOP


def write_log(out_dir, *events):
    out_dir.mkdir(parents=True, exist_ok=True)
    log = RunLog(out_dir / RUN_LOG, True)
    for kind, key, time_ms in events:
        getattr(log, kind)(key, time_ms=time_ms)
    log.close()


def test_new_folder(tmp_path):
    out = tmp_path / "a" / "b"
    assert prepare_output_dir(out, auto_resume=True) is None
    assert out.is_dir() and not any(out.iterdir())  # the write probe is removed


def test_interrupted_run_returns_its_run_start(tmp_path):
    write_log(tmp_path, ("start", "init_start", 100), ("start", RUN_START, 1234), ("event", "eval_accuracy", 2000))
    assert prepare_output_dir(tmp_path, auto_resume=True).run_start_ms == 1234


def test_log_without_run_start_is_set_aside(tmp_path):
    write_log(tmp_path, ("start", "init_start", 100), ("event", "seed", 101))
    assert prepare_output_dir(tmp_path, auto_resume=True) is None
    assert not (tmp_path / RUN_LOG).exists()
    kept = list(tmp_path.glob("run_log.before_run_start.*.txt"))
    assert len(kept) == 1 and "init_start" in kept[0].read_text()


def test_finished_run_refused(tmp_path):
    write_log(tmp_path, ("start", RUN_START, 1000), ("end", RUN_STOP, 2000))
    before = (tmp_path / RUN_LOG).read_text()
    with pytest.raises(VMBError, match="already holds a finished run"):
        prepare_output_dir(tmp_path, auto_resume=True)
    assert (tmp_path / RUN_LOG).read_text() == before


def test_result_json_refused(tmp_path):
    write_log(tmp_path, ("start", RUN_START, 1000))
    (tmp_path / RESULT).write_text(json.dumps({"status": "success"}))
    with pytest.raises(VMBError, match="finished run"):
        prepare_output_dir(tmp_path, auto_resume=True)


def test_result_json_without_log_refused(tmp_path):
    # A folder whose result.json survived (its log was moved away) still holds a finished result: a new run
    # there would silently overwrite it.
    (tmp_path / RESULT).write_text(json.dumps({"status": "success"}))
    with pytest.raises(VMBError, match="finished run"):
        prepare_output_dir(tmp_path, auto_resume=True)


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(VMBError) as info:
        prepare_output_dir(blocker / "out", auto_resume=True)
    assert "OUTPUT_DIR" in str(info.value) and str(blocker / "out") in str(info.value)
