"""Faults a long run meets: a full disk and preemption (vmb.files, vmb.engine.preemption).

The end-to-end tests run tools/run_net.py on the tiny config in a subprocess, with the faults placed exactly by
vmb.record.faults (VMB_FAIL_WRITE fails the N-th write of a file with ENOSPC; VMB_KILL_AFTER=KEY:N:SIGTERM
preempts right after the N-th KEY event) or by a real full filesystem (a 700 kB tmpfs, where mount is
allowed), then rerun the same command and check that it resumed and evaluated exactly as an uninterrupted run.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from vmb.cli import run_net
from vmb.engine import distributed
from vmb.engine.checkpoint import load_checkpoint, save_checkpoint
from vmb.engine.distributed import Context, free_port
from vmb.engine.preemption import (CHECKPOINT_GRACE_S, PREEMPTED_EXIT, PREEMPTION_SIGNALS, Preempted, StopSignal,
                                  checkpoint_fits, preemptible)
from vmb.engine.resume import prepare_output_dir
from vmb.errors import VMBError
from vmb.files import TEMP_MARK, WriteError
from vmb.record.faults import FAIL_WRITE_ENV, KILL_AFTER_ENV, KillAfter
from vmb.record.runlog import find, read_events
from vmb.record.schema import CHECKPOINT, CHECKPOINT_FILE, RESULT, RESUME, RUN_LOG, effective_evals

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
RUN_NET = REPO_ROOT / "tools" / "run_net.py"
# Never reached: every run trains MAX_EPOCH epochs and ends "aborted" (exit status 1), evaluating every half epoch.
SHORT_RUN = ("BENCHMARK.TARGET_TOP1", "100", "SOLVER.MAX_EPOCH", "2", "TRAIN.EVAL_PERIOD", "0.5")
ONE_PROCESS = Context(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
FULL_DISK_LINE = re.compile(r"^error: cannot write (\S+): No space left on device \((\d+(\.\d)? [kMG]B) free on "
                            r"its filesystem\); free some space there, then rerun the same command: it resumes$")
PREEMPTED_LINE = re.compile(r"^preempted \((?P<signal>SIGTERM|signal to another process)\) at (?P<where>.+): "
                            r"OUTPUT_DIR (?P<out>\S+) is resumable from its (checkpoint of epoch (?P<epoch>\d+)|last checkpoint), "
                            rf"its clock still running; rerun the same command \(exit status {PREEMPTED_EXIT}\)$")


def events_of(out: pathlib.Path) -> list:
    return read_events(out / RUN_LOG)


def keys(events: list, key: str) -> list:
    return find(events, key)


def stopped(line: str) -> tuple:
    """(signal, where, OUTPUT_DIR, checkpoint epoch) of a preemption line."""
    match = PREEMPTED_LINE.match(line)
    assert match, line
    return match["signal"], match["where"], match["out"], match["epoch"]


def evaluations(out: pathlib.Path) -> list:
    """(epoch, correct) of each evaluation that stands in the run log (the resume tests' comparison)."""
    return [(e.metadata["epoch_num"], e.metadata["correct"]) for e in effective_evals(events_of(out))]


def temp_files(out: pathlib.Path) -> list:
    return [p for p in out.rglob("*") if "tmp" in p.name]


def errors(stderr: str) -> list[str]:
    """The lines of stderr that are not the tiny run's input-bound warning (it has no decode workers)."""
    return [line for line in stderr.splitlines() if not line.startswith("warning: input-bound")]


class Train:
    """`train(out, *extra, env=None)`: tools/run_net.py on the tiny config (SHORT_RUN, then `extra`) into `out`."""

    def __init__(self, data_dir: pathlib.Path, tiny_train_args, smoke_config: pathlib.Path, env: dict) -> None:
        self.data_dir, self.tiny_train_args, self.smoke_config, self.env = data_dir, tiny_train_args, smoke_config, env

    def argv(self, out: pathlib.Path, *extra: str) -> list[str]:
        """run_net's arguments."""
        return ["--cfg", str(self.smoke_config), *self.tiny_train_args(self.data_dir, out, *SHORT_RUN, *extra)]

    def __call__(self, out: pathlib.Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(RUN_NET), *self.argv(out, *extra)], cwd=REPO_ROOT,
                              env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=300,
                              check=False)


@pytest.fixture(scope="module")
def train(tiny_videos_dir, tiny_train_args, smoke_config, child_env) -> Train:
    return Train(tiny_videos_dir, tiny_train_args, smoke_config, child_env)


@pytest.fixture(scope="module")
def uninterrupted(train, tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("faults") / "uninterrupted"
    proc = train(out)
    assert proc.returncode == 1, proc.stderr[-3000:]
    return out


def assert_resumes(train, out: pathlib.Path, uninterrupted: pathlib.Path, from_epoch: int, *extra: str) -> None:
    """Rerunning the same command resumes from the checkpoint of `from_epoch`, finishes, and evaluates exactly as
    the uninterrupted run; the clock was never reset."""
    first_start = keys(events_of(out), "run_start")[0].time_ms
    proc = train(out, *extra)
    assert proc.returncode == 1, proc.stderr[-3000:]  # target 100 %: aborted at MAX_EPOCH, as uninterrupted
    events, result = events_of(out), json.loads((out / RESULT).read_text())
    assert [e.value for e in keys(events, RESUME)] == [from_epoch]
    assert [e.time_ms for e in keys(events, "run_start")] == [result["run_start_ms"]] == [first_start]
    assert [e.time_ms for e in keys(events, "run_stop")] == [result["run_stop_ms"]]
    assert evaluations(out) == evaluations(uninterrupted)
    assert [e["epoch"] for e in result["evals"]] == [epoch for epoch, _ in evaluations(out)]
    assert not temp_files(out)


# --- A full disk ---------------------------------------------------------------------------------------------------

def append_of(out: pathlib.Path, key: str, n: int = 1) -> str:
    """The VMB_FAIL_WRITE fault that fails the append of the n-th `key` event of the run log of a run like `out`
    (a new run appends line k of its log as its k-th write)."""
    return f"{RUN_LOG}:{keys(events_of(out), key)[n - 1].line_no}"


@pytest.mark.slow
@pytest.mark.parametrize("fault, failed_file, resumed_from", [
    (lambda ref: f"{CHECKPOINT_FILE}:2", CHECKPOINT_FILE, 1),  # the checkpoint of epoch 2: the one of epoch 1 stays
    (lambda ref: append_of(ref, "eval_accuracy", 3), RUN_LOG, 1),  # evaluation 1.5, after checkpoint 1
    (lambda ref: f"{RESULT}:1", RESULT, 2),  # the end: run_stop is not logged
    (lambda ref: append_of(ref, "run_stop"), RUN_LOG, 2),  # the end: result.json was written, and is removed
], ids=["checkpoint", "run log", "result.json", "run_stop"])
def test_full_disk_is_one_line_and_the_same_command_resumes(train, uninterrupted, tmp_path, fault, failed_file,
                                                            resumed_from):
    out = tmp_path / "run"
    proc = train(out, env={FAIL_WRITE_ENV: fault(uninterrupted)})
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = errors(proc.stderr)
    assert len(lines) == 1 and FULL_DISK_LINE.match(lines[0]), proc.stderr[-3000:]
    assert FULL_DISK_LINE.match(lines[0]).group(1) == str(out / failed_file)
    assert not temp_files(out)
    assert not (out / RESULT).exists() and not keys(events_of(out), "run_stop")
    assert load_checkpoint(out / CHECKPOINT_FILE)["epoch"] == resumed_from
    assert_resumes(train, out, uninterrupted, resumed_from)


@pytest.fixture
def small_disk(tmp_path):
    """A 700 kB tmpfs mounted at tmp_path/disk, unmounted after; skipped where mount is not permitted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount(8) here to make a small filesystem")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=700k", "tmpfs", str(disk)], capture_output=True,
                             text=True, check=False)
    if mounted.returncode:
        pytest.skip(f"mounting a 700 kB tmpfs is not permitted here ({mounted.stderr.strip()})")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_checkpoint_on_a_full_filesystem(small_disk):
    """torch.save's RuntimeError on a really full disk is recognised (its OSError context), the previous checkpoint
    stays, and no temporary file is left."""
    path = small_disk / CHECKPOINT_FILE
    save_checkpoint(path, {"epoch": 1, "w": torch.zeros(100_000)})  # 400 kB of 700
    with pytest.raises(WriteError) as info:
        save_checkpoint(path, {"epoch": 2, "w": torch.zeros(100_000)})
    assert f"cannot write {path}: No space left on device (" in str(info.value)
    assert load_checkpoint(path)["epoch"] == 1
    assert os.listdir(small_disk) == [CHECKPOINT_FILE]


@pytest.mark.slow
def test_a_run_on_a_full_filesystem_resumes_once_there_is_space(train, uninterrupted, small_disk):
    """The user's case: OUTPUT_DIR on a 700 kB filesystem, where the second checkpoint does not fit."""
    out = small_disk / "run"
    proc = train(out, "TENSORBOARD.ENABLE", "True")
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = errors(proc.stderr)
    assert len(lines) == 1 and FULL_DISK_LINE.match(lines[0]).group(1) == str(out / CHECKPOINT_FILE), proc.stderr
    assert not temp_files(out)
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)], check=True)
    assert_resumes(train, out, uninterrupted, 1, "TENSORBOARD.ENABLE", "True")


def test_a_new_start_removes_the_temporary_files_of_a_killed_writer(tmp_path):
    for name in (CHECKPOINT_FILE, RESULT):
        (tmp_path / f".{name}{TEMP_MARK}99999").write_bytes(b"partial")
    (tmp_path / "notes.txt").write_text("kept")
    assert prepare_output_dir(tmp_path, auto_resume=True) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# --- Preemption ----------------------------------------------------------------------------------------------------

def test_signals_are_recorded_within_the_block_only():
    stop = StopSignal()
    before = {s: signal.getsignal(s) for s in PREEMPTION_SIGNALS}
    with stop.caught():
        assert not stop.stop_now(ONE_PROCESS, synced=False)
        os.kill(os.getpid(), signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.received == signal.SIGUSR2  # the first one counts
        assert stop.stop_now(ONE_PROCESS, synced=False)  # one process: at any step
    assert {s: signal.getsignal(s) for s in PREEMPTION_SIGNALS} == before


def test_an_error_after_the_signal_is_the_preemption(tmp_path, capsys):
    """The signal also ends the data-loader workers, and torch raises that in the loop: a preemption, one line."""
    worker_died = RuntimeError("DataLoader worker (pid 1234) is killed by signal: Terminated.")
    with pytest.raises(RuntimeError, match="is killed by signal"), preemptible(tmp_path):
        raise worker_died  # no signal here: the error stands
    with pytest.raises(Preempted) as info, preemptible(tmp_path):
        os.kill(os.getpid(), signal.SIGTERM)
        raise worker_died
    assert stopped(str(info.value)) == ("SIGTERM", "a step whose data-loader workers it ended", str(tmp_path), None)
    assert capsys.readouterr().err == f"{info.value}\n"


def test_kill_after_can_preempt(monkeypatch):
    monkeypatch.setenv(KILL_AFTER_ENV, f"{CHECKPOINT}:2:SIGTERM")
    with StopSignal().caught() as stop:
        faults = KillAfter()
        faults.logged(CHECKPOINT)
        assert stop.received is None
        faults.logged(CHECKPOINT)
        assert stop.received == signal.SIGTERM


def test_checkpoint_grace_rule():
    assert checkpoint_fits(None)  # nothing measured yet: try (a write cut by SIGKILL keeps the previous one)
    assert checkpoint_fits(CHECKPOINT_GRACE_S)
    assert not checkpoint_fits(CHECKPOINT_GRACE_S + 0.1)


def test_run_net_reports_the_preemption_of_the_processes_it_started(monkeypatch, tmp_path):
    """run_net with NUM_GPUS processes of its own (CUDA): SIGTERM reaches it too; it waits for them and exits 143
    rather than reporting a failed process."""

    def launch(processes, fn, cfg):
        os.kill(os.getpid(), signal.SIGTERM)  # recorded, not fatal, while the processes run
        raise VMBError("training process 0 exited with status 143; its error is printed above")

    monkeypatch.setattr(distributed, "processes_to_spawn", lambda num_gpus: 2)
    monkeypatch.setattr(distributed, "launch", launch)
    assert run_net.main(["OUTPUT_DIR", str(tmp_path / "run")]) == PREEMPTED_EXIT

    def failed_launch(processes, fn, cfg):
        raise VMBError("training process 1 exited with status 1; its error is printed above")

    monkeypatch.setattr(distributed, "launch", failed_launch)
    assert run_net.main(["OUTPUT_DIR", str(tmp_path / "run")]) == 2  # no signal: the failure stands


@pytest.mark.slow
def test_sigterm_stops_at_the_next_step_and_the_same_command_resumes(train, uninterrupted, tmp_path):
    out = tmp_path / "run"
    proc = train(out, env={KILL_AFTER_ENV: f"{CHECKPOINT}:1:SIGTERM"})
    assert proc.returncode == PREEMPTED_EXIT, proc.stderr[-3000:]
    lines = errors(proc.stderr)
    assert len(lines) == 1 and PREEMPTED_LINE.match(lines[0]), proc.stderr[-3000:]
    assert stopped(lines[0]) == ("SIGTERM", "epoch 2 step 1/4", str(out), "1")
    assert not temp_files(out) and not (out / RESULT).exists()
    stopped_ms = events_of(out)[-1].time_ms
    assert_resumes(train, out, uninterrupted, 1)
    # The clock kept running: the time between the stop and the rerun lies inside run_start..run_stop.
    assert keys(events_of(out), RESUME)[0].time_ms >= stopped_ms


@pytest.mark.slow
def test_sigterm_at_the_end_of_an_epoch_writes_the_checkpoint_the_period_skips(train, uninterrupted, tmp_path):
    out = tmp_path / "run"
    period = ("TRAIN.CHECKPOINT_PERIOD", "2")  # no checkpoint after epoch 1 ...
    proc = train(out, *period, env={KILL_AFTER_ENV: "epoch_stop:1:SIGTERM"})
    assert proc.returncode == PREEMPTED_EXIT, proc.stderr[-3000:]
    line = errors(proc.stderr)[-1]
    assert stopped(line) == ("SIGTERM", "the end of epoch 1", str(out), "1"), line
    assert [e.value for e in keys(events_of(out), CHECKPOINT)] == [1]  # ... but the stop wrote one, logged
    assert_resumes(train, out, uninterrupted, 1, *period)


@pytest.mark.slow
def test_sigterm_to_the_whole_job_with_decode_workers(train, uninterrupted, tmp_path):
    """As SLURM sends it: to every process, the data-loader workers too, which die of it (torch's handler)."""
    out, workers = tmp_path / "run", ("DATA_LOADER.NUM_WORKERS", "1")
    job = subprocess.Popen([sys.executable, str(RUN_NET), *train.argv(out, *workers)], cwd=REPO_ROOT,
                           env=train.env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                           start_new_session=True)
    wait_for_checkpoint(job, out)
    os.killpg(job.pid, signal.SIGTERM)
    _, stderr = job.communicate(timeout=60)
    assert job.returncode == PREEMPTED_EXIT, stderr[-3000:]
    lines = errors(stderr)
    assert len(lines) == 1 and stopped(lines[0])[0] == "SIGTERM", stderr[-3000:]
    assert not temp_files(out) and not (out / RESULT).exists()
    assert_resumes(train, out, uninterrupted, 1, *workers)


def wait_for_checkpoint(job: subprocess.Popen, out: pathlib.Path) -> None:
    """Until the run log of the running `job` shows its first checkpoint."""
    began = time.monotonic()
    while not ((out / RUN_LOG).exists() and f'"{CHECKPOINT}"' in (out / RUN_LOG).read_text()):
        assert job.poll() is None and time.monotonic() - began < 120, "no checkpoint"
        time.sleep(0.05)


def torchrun(train_args: list[str], env: dict) -> subprocess.Popen:
    """tools/run_net.py in 2 CPU processes under torchrun, in a session of its own (a scheduler's job)."""
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", str(free_port()), str(RUN_NET), *train_args]
    return subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


@pytest.mark.slow
def test_two_processes_stop_together_on_sigterm_and_resume(train, tmp_path):
    """SIGTERM to the whole job (torchrun and both ranks, as Slurm sends it) after the first checkpoint: both ranks
    stop after the same step, with no hang, and the rerun resumes from that checkpoint."""
    out = tmp_path / "run"
    args = train.argv(out, "SOLVER.MAX_EPOCH", "3")
    job = torchrun(args, train.env)
    wait_for_checkpoint(job, out)
    os.killpg(job.pid, signal.SIGTERM)
    _, stderr = job.communicate(timeout=60)  # no hang
    stops = [PREEMPTED_LINE.match(line) for line in stderr.splitlines() if line.startswith("preempted")]
    assert len(stops) == 2 and all(stops), stderr[-5000:]  # one line per rank ...
    assert stops[0]["where"] == stops[1]["where"] and stops[0]["epoch"] == "1"  # ... at the same step
    assert not temp_files(out) and not (out / RESULT).exists()
    rerun = torchrun(args, train.env)
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 1, stderr[-5000:]  # target 100 %: aborted at MAX_EPOCH
    assert [e.value for e in keys(events_of(out), RESUME)] == [1]
    assert [epoch for epoch, _ in evaluations(out)] == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]


@pytest.mark.slow
def test_a_signal_to_one_rank_stops_both(train, tmp_path):
    """Only rank 0 gets SIGTERM (it writes the run log, where VMB_KILL_AFTER counts): rank 1 learns it in the
    all-reduce of the flag and stops after the same step instead of waiting for rank 0 forever."""
    out = tmp_path / "run"
    job = torchrun(train.argv(out), {**train.env, KILL_AFTER_ENV: f"{CHECKPOINT}:1:SIGTERM"})
    _, stderr = job.communicate(timeout=120)
    stops = sorted(line for line in stderr.splitlines() if line.startswith("preempted"))
    assert len(stops) == 2, stderr[-5000:]
    assert [stopped(line)[0] for line in stops] == ["SIGTERM", "signal to another process"]
    assert len({stopped(line)[1] for line in stops}) == 1
    assert [e.value for e in keys(events_of(out), CHECKPOINT)] == [1] and not (out / RESULT).exists()
