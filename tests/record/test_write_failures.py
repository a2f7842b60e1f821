"""A full or failing disk while a run writes: one line naming the file and the free space, no temporary file
left, anything else raised unchanged (vmb.files, the run log, TensorBoard)."""
from __future__ import annotations

import errno
import os
import re
import threading

import pytest
import torch
from tensorboard.compat.tensorflow_stub.io import gfile

from vmb.files import WriteError, atomic_path, io_failure, write_text_atomic
from vmb.record.faults import FAIL_WRITE_ENV
from vmb.record.runlog import RunLog, read_events
from vmb.record.tensorboard import TensorBoard

FREE = r"\(\d+(\.\d)? [kMG]B free on its filesystem\)"


class FullDisk:
    """A file object that takes `room` bytes, then fails as a full disk does."""

    def __init__(self, room: int) -> None:
        self.room = room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return len(data)

    def flush(self) -> None:
        pass


def test_io_failure_sees_through_torch_s_runtime_error():
    with pytest.raises(RuntimeError) as info:  # torch.save says "unexpected pos", not why
        torch.save({"w": torch.zeros(10_000)}, FullDisk(room=100))
    assert io_failure(info.value).errno == errno.ENOSPC
    assert io_failure(RuntimeError("unexpected pos 576 vs 534")) is None  # no OSError behind it: not a disk's
    assert io_failure(PermissionError(errno.EACCES, "Permission denied")) is None  # not a full or failing disk
    try:
        try:
            raise OSError(errno.EIO, "Input/output error")
        except OSError:
            raise WriteError("cannot write x: Input/output error") from None
    except WriteError as exc:
        assert io_failure(exc) is None  # already said: a `from None` chain is not followed


def test_a_failed_atomic_write_is_one_line_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    monkeypatch.setenv(FAIL_WRITE_ENV, "result.json:2")
    path = tmp_path / "result.json"
    write_text_atomic(path, "first")
    with pytest.raises(WriteError) as info:
        write_text_atomic(path, "second")
    assert re.fullmatch(rf"cannot write {path}: No space left on device {FREE}; free some space there, then rerun "
                        "the same command: it resumes", str(info.value))
    assert path.read_text() == "first"  # the previous file stays
    assert os.listdir(tmp_path) == ["result.json"]
    write_text_atomic(path, "third")  # only the N-th write fails
    assert path.read_text() == "third"


def test_other_errors_pass_unchanged_and_leave_no_temporary_file(tmp_path):
    with pytest.raises(ValueError, match="not a disk's"), atomic_path(tmp_path / "checkpoint.pyth") as tmp:
        tmp.write_bytes(b"partial")
        raise ValueError("not a disk's")
    assert os.listdir(tmp_path) == []


def test_a_failed_run_log_append_is_one_line_and_the_log_takes_no_more(tmp_path, monkeypatch):
    """mllog swallows what a logging handler raises (it logs "Failed to encode" instead): the failure must still
    reach the trainer, and no line may follow the one that failed."""
    monkeypatch.setenv(FAIL_WRITE_ENV, "run_log.txt:3")
    path = tmp_path / "run_log.txt"
    log = RunLog(path, True)
    log.start("run_start", time_ms=1000)
    log.event("train_samples", 16)
    with pytest.raises(WriteError, match=rf"^cannot write {path}: No space left on device {FREE}; "):
        log.event("eval_accuracy", 42.5, epoch_num=1.0)
    log.event("eval_accuracy", 50.0, epoch_num=2.0)  # closed: ignored
    log.close()
    assert [e.key for e in read_events(path)] == ["run_start", "train_samples"]
    assert path.read_text().endswith("\n")


def test_a_run_log_error_that_is_not_the_disk_s_is_raised_unchanged(tmp_path, monkeypatch):
    log = RunLog(tmp_path / "run_log.txt", True)

    def refused(text):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(log._handler.stream, "write", refused)
    with pytest.raises(PermissionError):
        log.event("train_samples", 16)


def failing_local_writes(monkeypatch, errno_: int) -> list:
    """Every write TensorBoard's background thread makes to a local file fails with `errno_`; returns the list
    that the thread exceptions reaching threading.excepthook (which prints them) are appended to."""

    def write(self, filename, file_content, mode):
        raise OSError(errno_, os.strerror(errno_), filename)

    monkeypatch.setattr(gfile.LocalFileSystem, "_write", write)
    reported: list = []
    monkeypatch.setattr(threading, "excepthook", lambda args: reported.append(args.exc_value))
    return reported


def test_tensorboard_on_a_full_disk_is_one_warning_and_turns_off(tmp_path, monkeypatch, capfd):
    reported = failing_local_writes(monkeypatch, errno.ENOSPC)
    hook = threading.excepthook
    board = TensorBoard(tmp_path / "tensorboard")
    for step in range(30):  # more than the writer's queue holds: nothing blocks once its thread has failed
        board.add_scalar("train/loss", 1.0, step)
    board.close()
    assert threading.excepthook is hook and reported == []  # the thread's traceback is not printed
    err = capfd.readouterr().err
    assert re.fullmatch(rf"warning: cannot write TensorBoard events to {tmp_path / 'tensorboard'}: No space left on "
                        rf"device {FREE}; TensorBoard is off for the rest of this run, which goes on \(its result "
                        r"does not depend on it\)\n", err), err


def test_tensorboard_errors_that_are_not_the_disk_s_are_raised(tmp_path, monkeypatch):
    reported = failing_local_writes(monkeypatch, errno.EACCES)
    hook = threading.excepthook
    with pytest.raises(PermissionError):
        TensorBoard(tmp_path / "tensorboard")  # its first event is written, and waited for, at once
    assert threading.excepthook is hook and [type(e) for e in reported] == [PermissionError]  # not silenced
