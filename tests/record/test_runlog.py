"""MLPerf-format run log: written by RunLog, parsed back by read_events."""
from __future__ import annotations

import json
import time

import pytest

from vmb.record.runlog import PREFIX, LogFormatError, RunLog, find, read_events

from vmb.record.schema import RUN_START, RUN_STOP


def write_log(path, enabled=True):
    log = RunLog(path, enabled)
    log.start(RUN_START, time_ms=1_000)
    log.event("global_batch_size", 128)
    log.event("opt_base_learning_rate", 0.1)
    log.event("submission_benchmark", "x3d_m")
    log.start("epoch_start", epoch_num=1)
    time.sleep(0.002)
    log.event("eval_accuracy", 12.5, epoch_num=0.25)
    log.event("opt_gradient_clip_norm", None)
    log.end(RUN_STOP, status="success", epoch_num=0.25)
    log.close()
    return log


def test_round_trip(tmp_path):
    path = tmp_path / "run_log.txt"
    write_log(path)
    lines = path.read_text().splitlines()
    assert all(line.startswith(PREFIX) for line in lines)
    events = read_events(path)
    assert [e.key for e in events] == [RUN_START, "global_batch_size", "opt_base_learning_rate",
                                      "submission_benchmark", "epoch_start", "eval_accuracy",
                                      "opt_gradient_clip_norm", RUN_STOP]
    assert [e.event_type for e in events] == ["INTERVAL_START", "POINT_IN_TIME", "POINT_IN_TIME", "POINT_IN_TIME",
                                             "INTERVAL_START", "POINT_IN_TIME", "POINT_IN_TIME", "INTERVAL_END"]
    assert [e.line_no for e in events] == list(range(1, 9))
    by_key = {e.key: e for e in events}
    assert by_key[RUN_START].time_ms == 1_000
    assert by_key["global_batch_size"].value == 128
    assert by_key["opt_base_learning_rate"].value == 0.1
    assert by_key["submission_benchmark"].value == "x3d_m"
    assert by_key["eval_accuracy"].value == 12.5
    assert by_key["eval_accuracy"].metadata["epoch_num"] == 0.25
    assert by_key["opt_gradient_clip_norm"].value is None
    assert by_key[RUN_STOP].metadata["status"] == "success"
    # Times after the explicit run_start are real wall-clock times, never decreasing.
    times = [e.time_ms for e in events[1:]]
    assert times == sorted(times)
    assert abs(times[0] - time.time() * 1000) < 60_000
    # Each record is the standard MLLOG JSON.
    record = json.loads(lines[1][len(PREFIX):])
    assert {"namespace", "time_ms", "event_type", "key", "value", "metadata"} <= set(record)


def test_append_mode(tmp_path):
    path = tmp_path / "run_log.txt"
    write_log(path)
    log = RunLog(path, True)
    log.event("vmb_resume", 2, epoch_num=2)
    log.close()
    events = read_events(path)
    assert len(events) == 9
    assert events[-1].key == "vmb_resume" and events[-1].metadata["epoch_num"] == 2
    # mllog records the caller of RunLog's methods (not runlog.py itself) as the source of each event.
    assert events[-1].metadata["file"].endswith("test_runlog.py")
    assert len(find(events, RUN_START)) == 1


def test_disabled_writes_nothing(tmp_path):
    path = tmp_path / "run_log.txt"
    write_log(path, enabled=False)
    assert not path.exists()


def test_other_lines_ignored(tmp_path):
    path = tmp_path / "run_log.txt"
    write_log(path)
    text = path.read_text()
    path.write_text("some warning printed by a library\n" + text + "\n")
    events = read_events(path)
    assert len(events) == 8 and events[0].line_no == 2


@pytest.mark.parametrize("bad", [
    ':::MLLOG {"namespace": "", "time_ms": 5, "event_type": "POINT_IN_TIME", "key": "x"',  # cut JSON
    ':::MLLOG {"namespace": "", "event_type": "POINT_IN_TIME", "key": "x", "value": 1}',   # no time_ms
    ':::MLLOG {"namespace": "", "time_ms": "soon", "event_type": "POINT_IN_TIME", "key": "x"}',
    ':::MLLOG [1, 2, 3]',
])
def test_malformed_line_names_file_and_line(tmp_path, bad):
    path = tmp_path / "run_log.txt"
    write_log(path)
    lines = path.read_text().splitlines()
    lines.insert(3, bad)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LogFormatError) as info:
        read_events(path)
    assert str(info.value).startswith(f"{path}:4:")


def test_find(tmp_path):
    path = tmp_path / "run_log.txt"
    write_log(path)
    events = read_events(path)
    assert [e.value for e in find(events, "eval_accuracy")] == [12.5]
    assert find(events, "nothing") == []
