"""The SLURM launch tools: tools/slurm/vmb.sbatch (checked by bash and shellcheck, and run under a fake `srun`
that records the torchrun command it is given) and tools/submit.py (the call it submits, its requeue, and a tiny
training run through submitit's in-process debug executor)."""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest
from torch.distributed.run import get_args_parser

from vmb.cli import submit
from vmb.errors import VMBError
from vmb.launch import job_port
from vmb.record.schema import RESULT

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SBATCH = REPO_ROOT / "tools" / "slurm" / "vmb.sbatch"
# Records its arguments (NUL-separated) in $RECORD and its pid in $RECORD.pid, then runs for $FAKE_SRUN_SECONDS
# (default 0) with its output closed.
FAKE_SRUN = ('#!/bin/bash\nexec >/dev/null 2>&1\necho $$ > "$RECORD.pid"\nprintf "%s\\0" "$@" > "$RECORD"\n'
             'exec sleep "${FAKE_SRUN_SECONDS:-0}"\n')
FAKE_SCONTROL = '#!/bin/bash\necho "$@" >> "$RECORD.scontrol"\n'
# What sbatch sets in the batch script of `sbatch --nodes 2 --gpus-per-node 4 -J x3d`.
BATCH_ENV = {"SLURM_JOB_ID": "8424242", "SLURM_JOB_NAME": "x3d", "SLURM_NNODES": "2", "SLURM_JOB_NUM_NODES": "2",
             "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_NODELIST": "gpu[07-08]", "SLURM_GPUS_ON_NODE": "4",
             "SLURM_CPUS_ON_NODE": "64", "SLURM_NTASKS": "2", "SLURM_PROCID": "0", "SLURM_NODEID": "0",
             "SLURM_SUBMIT_DIR": str(REPO_ROOT)}


def test_sbatch_script_passes_bash_and_shellcheck():
    subprocess.run(["bash", "-n", str(SBATCH)], check=True)
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed")
    proc = subprocess.run([shellcheck, str(SBATCH)], check=False, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


@pytest.fixture
def fake_slurm(tmp_path, child_env):
    """`run(args, **env)`: tools/slurm/vmb.sbatch run by bash from the repository root as sbatch would (the batch
    environment of a 2-node x 4-GPU job), with fake `srun` and `scontrol` first on PATH; returns (the finished
    process, srun's arguments or None), or with `wait=False` (the running process, the file srun's arguments go
    to)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    record = tmp_path / "srun_args"
    base = {name: value for name, value in child_env.items()
            if not name.startswith(("SLURM_", "MASTER_", "VMB_"))}
    base.update(BATCH_ENV, RECORD=str(record),
                PATH=os.pathsep.join([str(bin_dir), str(pathlib.Path(sys.executable).parent), base["PATH"]]))

    def run(args: list[str], wait: bool = True, **env: str):
        command = ["bash", str(SBATCH), *args]
        if not wait:
            return subprocess.Popen(command, cwd=REPO_ROOT, env={**base, **env}, text=True, stderr=subprocess.PIPE), \
                record
        proc = subprocess.run(command, check=False, cwd=REPO_ROOT, env={**base, **env}, text=True, capture_output=True,
                              timeout=60)
        argv = record.read_text().split("\0")[:-1] if record.exists() else None
        return proc, argv

    return run


def split_srun(argv: list[str]) -> tuple[list[str], object]:
    """(srun's own options, torchrun's parsed arguments)."""
    at = argv.index("torchrun")
    return argv[:at], get_args_parser().parse_args(argv[at + 1:])


def test_sbatch_runs_one_torchrun_per_node(fake_slurm):
    proc, argv = fake_slurm(["configs/X3D_M.yaml", "DATA.PATH_TO_DATA_DIR", "/nvme/kinetics20",
                             "DATA_LOADER.NUM_WORKERS", "auto"])
    assert proc.returncode == 0, proc.stderr
    srun_options, torchrun = split_srun(argv)
    assert srun_options == ["--ntasks-per-node=1", "--cpus-per-task=64", "--kill-on-bad-exit=1"]
    assert (torchrun.nnodes, torchrun.nproc_per_node) == ("2", "4")
    # The rendezvous: the job's first node, the port of vmb.launch's rule, the job id (kept on requeue).
    assert (torchrun.rdzv_backend, torchrun.rdzv_endpoint, torchrun.rdzv_id) == (
        "c10d", f"gpu07:{job_port('8424242')}", "8424242")
    assert torchrun.training_script == "tools/run_net.py"
    assert torchrun.training_script_args == [
        "--cfg", "configs/X3D_M.yaml", "NUM_GPUS", "8", "OUTPUT_DIR", "runs/x3d-8424242",
        "DATA.PATH_TO_DATA_DIR", "/nvme/kinetics20", "DATA_LOADER.NUM_WORKERS", "auto"]


def test_sbatch_takes_the_user_s_folder_gpu_count_and_rendezvous(fake_slurm):
    proc, argv = fake_slurm(["configs/smoke/X3D.yaml"], VMB_OUTPUT_DIR="/scratch/x3d-seed0", VMB_GPUS_PER_NODE="2",
                            MASTER_ADDR="head-ib0", MASTER_PORT="29400")
    assert proc.returncode == 0, proc.stderr
    _, torchrun = split_srun(argv)
    assert (torchrun.nproc_per_node, torchrun.rdzv_endpoint) == ("2", "head-ib0:29400")
    assert torchrun.training_script_args[2:] == ["NUM_GPUS", "4", "OUTPUT_DIR", "/scratch/x3d-seed0"]


@pytest.mark.parametrize("args, env, message", [
    ([], {}, "usage: sbatch"),
    (["configs/X3D_M.yaml", "RNG_SEED"], {}, "usage: sbatch"),  # a KEY without its VALUE
    (["configs/nope.yaml"], {}, "config configs/nope.yaml not found"),
    (["configs/X3D_M.yaml"], {"SLURM_GPUS_ON_NODE": ""}, "no GPU count per node: submit with --gpus-per-node"),
    (["configs/X3D_M.yaml"], {"SLURM_JOB_ID": ""}, "not in a SLURM job: submit it with sbatch"),
])
def test_sbatch_refuses_with_one_line(fake_slurm, args, env, message):
    proc, argv = fake_slurm(args, **env)
    assert proc.returncode == 2
    assert message in proc.stderr and argv is None


def test_sbatch_requeues_itself_before_the_time_limit(fake_slurm):
    """USR1 (--signal=B:USR1@120) while srun runs: the script requeues its job at once, which restarts into the
    same OUTPUT_DIR (the job id stays)."""
    proc, record = fake_slurm(["configs/X3D_M.yaml"], wait=False, FAKE_SRUN_SECONDS="30")
    deadline = time.monotonic() + 30
    while not record.exists() and time.monotonic() < deadline:  # srun started: the trap is set
        time.sleep(0.05)
    began = time.monotonic()
    proc.send_signal(signal.SIGUSR1)
    try:
        _, stderr = proc.communicate(timeout=20)
    finally:
        srun_pid = int(pathlib.Path(f"{record}.pid").read_text())
        os.kill(srun_pid, signal.SIGTERM)  # the fake srun, still sleeping (SLURM kills the real one on requeue)
    assert time.monotonic() - began < 10  # the trap ran while srun was still running
    assert "requeueing job 8424242; it resumes in runs/x3d-8424242" in stderr
    assert pathlib.Path(f"{record}.scontrol").read_text() == "requeue 8424242\n"


def _args(*argv: str):
    return submit._parser().parse_args(list(argv))


def test_submit_builds_run_net_s_call(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(REPO_ROOT / "configs")
    args = _args("--cfg", "configs/X3D_M.yaml", "--nodes", "2", "--gpus-per-node", "8", "--partition", "gpu",
                 "DATA_LOADER.NUM_WORKERS", "auto", "RNG_SEED", "3")
    cfg_file, overrides, output_dir = submit.job_call(args)
    assert cfg_file == str(tmp_path / "configs" / "X3D_M.yaml")
    assert overrides == ["NUM_GPUS", "16", "DATA_LOADER.NUM_WORKERS", "auto", "RNG_SEED", "3"]
    assert output_dir == str(tmp_path / "runs" / "X3D_M-{job_id}")


@pytest.mark.parametrize("extra, message", [
    (["NUM_GPUS", "4"], "NUM_GPUS is set by tools/submit.py: use --nodes and --gpus-per-node"),
    (["OUTPUT_DIR", "x"], "OUTPUT_DIR is set by tools/submit.py: use --output-dir"),
    (["SOLVER.NOPE", "1"], "SOLVER.NOPE"),  # the config is loaded before anything is queued
    (["--nodes", "0"], "--nodes must be at least 1"),
])
def test_submit_refuses_with_one_line(extra, message, capsys):
    argv = ["--cfg", str(REPO_ROOT / "configs/X3D_M.yaml"), "--nodes", "1", "--gpus-per-node", "8", "--partition",
            "gpu", *extra]
    assert submit.main(argv) == 2
    assert message in capsys.readouterr().err


def test_submit_writes_a_requeueable_job_of_one_task_per_gpu(tmp_path, monkeypatch, capsys):
    """tools/submit.py against a fake `sbatch` (which records the script submitit writes): 2 nodes x 8 tasks with 8
    GPUs each, whole nodes, requeueable, srun ending the step when a task fails; the pickled call is TrainJob's
    with NUM_GPUS 16 and the run folder of the job id."""
    from submitit.core.utils import DelayedSubmission

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text('#!/bin/bash\ncp "$1" "$RECORD"\necho "Submitted batch job 4242"\n')
    (bin_dir / "srun").write_text("#!/bin/bash\nexit 1\n")  # never run: submitit only looks for it
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("RECORD", str(tmp_path / "job.sh"))
    monkeypatch.chdir(tmp_path)
    assert submit.main(["--cfg", str(REPO_ROOT / "configs/X3D_M.yaml"), "--nodes", "2", "--gpus-per-node", "8",
                        "--partition", "gpu", "--time", "120", "--cpus-per-task", "12", "RNG_SEED", "1"]) == 0
    assert capsys.readouterr().out.startswith(f"submitted job 4242: 2 node(s) x 8 GPU(s); run folder "
                                              f"{tmp_path / 'runs' / 'X3D_M-4242'}")
    script = (tmp_path / "job.sh").read_text()
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --cpus-per-task=12", "#SBATCH --partition=gpu", "#SBATCH --time=120", "#SBATCH --exclusive",
                 "#SBATCH --mem=0", "#SBATCH --requeue", "#SBATCH --job-name=X3D_M"):
        assert line in script.splitlines()
    assert "--kill-on-bad-exit=1" in next(line for line in script.splitlines() if line.startswith("srun "))
    [pickled] = (tmp_path / "runs" / "submitit" / "4242").glob("*_submitted.pkl")
    call = DelayedSubmission.load(pickled)
    assert isinstance(call.function, submit.TrainJob)
    assert call.args == (str(REPO_ROOT / "configs/X3D_M.yaml"), ["NUM_GPUS", "16", "RNG_SEED", "1"],
                         str(tmp_path / "runs" / "X3D_M-{job_id}"))


def test_submit_without_slurm_is_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    argv = ["--cfg", str(REPO_ROOT / "configs/X3D_M.yaml"), "--nodes", "1", "--gpus-per-node", "8", "--partition",
            "gpu"]
    assert submit.main(argv) == 2
    assert "no SLURM here (sbatch is not on PATH)" in capsys.readouterr().err


def test_requeue_reruns_the_same_call():
    """submitit's checkpoint(): the same callable with the same arguments, so the same OUTPUT_DIR."""
    from submitit.helpers import DelayedSubmission

    job = submit.TrainJob()
    call = ("/repo/configs/X3D_M.yaml", ["NUM_GPUS", "16"], "/repo/runs/X3D_M-{job_id}")
    again = job.checkpoint(*call)
    assert isinstance(again, DelayedSubmission)
    assert again.function is job and again.args == call and again.kwargs == {}


@pytest.fixture
def task_of_job(monkeypatch):
    """A submitit job's environment (the debug executor's job id) around a stand-in for run_net.main, which
    records its argv and ends as `outcome` says: an int is returned, a SystemExit raised."""
    from vmb.cli import run_net

    monkeypatch.setenv("SUBMITIT_DEBUG_JOB_ID", "DEBUG_7")
    calls = []

    def use(outcome):
        def main(argv):
            calls.append(argv)
            if isinstance(outcome, SystemExit):
                raise outcome
            return outcome
        monkeypatch.setattr(run_net, "main", main)
        return calls

    return use


def test_a_task_runs_run_net_into_its_job_s_folder(task_of_job):
    calls = task_of_job(1)
    assert submit.TrainJob()("/repo/c.yaml", ["NUM_GPUS", "16"], "/repo/runs/c-{job_id}") == 1
    assert calls == [["--cfg", "/repo/c.yaml", "NUM_GPUS", "16", "OUTPUT_DIR", "/repo/runs/c-DEBUG_7"]]


def test_a_preempted_task_hands_the_signal_back_to_submitit(task_of_job):
    """The timed loop took submitit's SIGUSR2 and stopped resumable (the training process exits PREEMPTED_EXIT):
    the task raises the signal again for submitit's handler, which requeues the job with `checkpoint`'s call."""
    from vmb.engine.preemption import PREEMPTED_EXIT

    task_of_job(SystemExit(PREEMPTED_EXIT))
    received = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: received.append(signum))
    try:
        assert submit.TrainJob()("/repo/c.yaml", [], "/repo/runs/c") == PREEMPTED_EXIT
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert received == [signal.SIGUSR2]


@pytest.mark.parametrize("outcome", [2, SystemExit(2)])
def test_a_failed_task_fails_the_job(task_of_job, outcome):
    """run_net's error (status 2, or a training process's exit 2) ends the task non-zero: srun ends the others."""
    task_of_job(outcome)
    with pytest.raises((VMBError, SystemExit)) as failure:
        submit.TrainJob()("/repo/c.yaml", [], "/repo/runs/c")
    if isinstance(outcome, SystemExit):
        assert failure.value is outcome
    else:
        assert "exited with status 2; its error is above" in str(failure.value)


@pytest.mark.slow
def test_submit_trains_through_submitit(tiny_videos_dir, tmp_path, monkeypatch, smoke_config, tiny_train_args):
    """The submitted call, run by submitit's debug executor in this process (one task, no launcher): a tiny run
    into runs/<job name>-<job id>; run_net's status is the job's result."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("SLURM_") or name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
            monkeypatch.delenv(name)
    overrides = tiny_train_args(tiny_videos_dir, "unused", "BENCHMARK.TARGET_TOP1", "100", "SOLVER.MAX_EPOCH", "1")
    for key in ("OUTPUT_DIR", "NUM_GPUS"):  # set by submit
        del overrides[overrides.index(key):overrides.index(key) + 2]
    args = _args("--cfg", str(smoke_config), "--nodes", "1", "--gpus-per-node", "1", "--partition", "cpu",
                 "--job-name", "tiny", *overrides)
    cfg_file, run_overrides, output_dir = submit.job_call(args)
    assert run_overrides[:2] == ["NUM_GPUS", "1"]
    run_overrides[1] = "0"  # this machine has no GPU: the one task trains on the CPU
    job, folder = submit.submit(args, (cfg_file, run_overrides, output_dir), cluster="debug")
    assert folder == tmp_path / "runs" / f"tiny-{job.job_id}"
    assert job.result() == 1  # target 100 % not reached: aborted, run_net's status 1
    result = json.loads((folder / RESULT).read_text())
    assert (result["status"], result["n_devices"]) == ("aborted", 1)
