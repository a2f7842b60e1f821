"""`vmb-submit` / `tools/submit.py`: train a config on SLURM through submitit, one task per GPU.

    tools/submit.py --cfg configs/X3D_M.yaml --nodes 2 --gpus-per-node 8 --partition gpu [--time 240]
        [--output-dir DIR] [--cpus-per-task C] [--job-name NAME] [KEY VALUE ...]

The job has nodes x gpus-per-node tasks on exclusive nodes and is requeueable; each task runs run_net's training as an srun task
(vmb.launch reads SLURM's variables; no torchrun) with NUM_GPUS nodes x gpus-per-node and OUTPUT_DIR --output-dir,
by default runs/<job name>-{job_id}: `{job_id}` becomes the SLURM job id in the task, and a requeued job keeps
its id. On preemption or at the time limit (submitit's SIGUSR2, 90 s before it) the training stops resumable
(vmb.engine.preemption), submitit asks `TrainJob.checkpoint` for what to run next (the same call) and requeues
the job, which then reruns the same command into the same OUTPUT_DIR, where run_net resumes from the last
checkpoint (TRAIN.AUTO_RESUME); submitit requeues at most 3 times for the time limit, preemptions do not count.
A task that fails ends the others (srun --kill-on-bad-exit=1). The config and the overrides are loaded here
first, so that a mistake is reported now, not after the wait in the queue. submitit's files (the pickled call,
each task's log) go to runs/submitit/<job id>/.

Needs the `slurm` extra (pip install -e ".[slurm]"), and a shared filesystem for the repository and runs/.
"""
from __future__ import annotations

import argparse
import shlex
import shutil
from collections.abc import Sequence
from pathlib import Path

from vmb.cli.common import config_parser
from vmb.errors import ConfigError, VMBError, exit_on_error

JOB_ID = "{job_id}"  # in --output-dir: replaced by the SLURM job id in each task (the same after a requeue)
LOG_DIR = Path("runs") / "submitit"
SET_BY_SUBMIT = {"NUM_GPUS": "--nodes and --gpus-per-node", "OUTPUT_DIR": "--output-dir"}


class TrainJob:
    """run_net's training in one task of a submitit job; submitit resubmits `checkpoint`'s call on requeue."""

    def __call__(self, cfg_file: str, overrides: list[str], output_dir: str) -> int:
        """Train `cfg_file` with `overrides` into `output_dir` (JOB_ID replaced); run_net's exit status: 0 when the
        target was reached, 1 when not, PREEMPTED_EXIT when a preemption or time-limit signal stopped it.

        The timed loop takes submitit's signal (SIGUSR2) and SIGTERM in place of submitit's handler and stops
        resumable (vmb.engine.preemption); the signal is then handed back to submitit's handler (where one is set:
        not in the debug executor), which in task 0 calls `checkpoint`, requeues the job and exits.

        Raises:
            VMBError: run_net failed (status 2: its one-line error is in this task's log); the task then exits
                non-zero, and srun ends the other tasks. A training process's own exit (run_net._train_process)
                other than a preemption propagates as SystemExit, with the same effect.
        """
        import signal

        from submitit import JobEnvironment

        from vmb.cli import run_net
        from vmb.engine.preemption import PREEMPTED_EXIT

        argv = ["--cfg", cfg_file, *overrides, "OUTPUT_DIR", output_dir.replace(JOB_ID, JobEnvironment().job_id)]
        try:
            status = run_net.main(argv)
        except SystemExit as exc:
            if exc.code != PREEMPTED_EXIT:
                raise
            status = PREEMPTED_EXIT
        warning = getattr(signal, f"SIG{JobEnvironment.USR_SIG}")
        if status == PREEMPTED_EXIT and signal.getsignal(warning) not in (signal.SIG_DFL, signal.SIG_IGN, None):
            signal.raise_signal(warning)  # submitit's handler, which the timed loop had replaced
        if status not in (0, 1, PREEMPTED_EXIT):
            raise VMBError(f"tools/run_net.py {shlex.join(argv)} exited with status {status}; its error is above")
        return status

    def checkpoint(self, cfg_file: str, overrides: list[str], output_dir: str):
        """What a requeued job runs (submitit calls this on preemption or at the time limit): the same call, so
        the same OUTPUT_DIR, which resumes from its last checkpoint. Returns a submitit DelayedSubmission."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, cfg_file, overrides, output_dir)


def _parser() -> argparse.ArgumentParser:
    parser = config_parser("Train a config on SLURM (submitit): one task per GPU, requeued into the same "
                           "OUTPUT_DIR on preemption or at the time limit.")
    parser.add_argument("--nodes", type=int, required=True, help="nodes to train on")
    parser.add_argument("--gpus-per-node", type=int, required=True, help="GPUs (training processes) per node")
    parser.add_argument("--partition", required=True, help="SLURM partition")
    parser.add_argument("--time", type=int, default=240, metavar="MIN", help="time limit in minutes (default 240)")
    parser.add_argument("--output-dir", help=f"the run folder; {JOB_ID} becomes the job id (default: "
                                             f"runs/<job name>-{JOB_ID})")
    parser.add_argument("--cpus-per-task", type=int, metavar="C",
                        help="CPUs of each GPU's process, its decoding workers included (default: the cluster's, "
                             "often 1: set it, e.g. the node's cores / gpus-per-node)")
    parser.add_argument("--job-name", help="SLURM job name (default: the config's file name)")
    return parser


def _job_name(args: argparse.Namespace) -> str:
    return args.job_name or Path(args.cfg_file).stem


def job_call(args: argparse.Namespace) -> tuple[str, list[str], str]:
    """TrainJob's arguments for the parsed command line: (config path, overrides with NUM_GPUS, OUTPUT_DIR template),
    paths absolute (the tasks start in the submission folder, but a requeue must not depend on it).

    Raises:
        ConfigError: a count or time below 1, NUM_GPUS or OUTPUT_DIR among the overrides, or the config and
            overrides do not load.
    """
    from vmb.config import load_config

    for option in ("nodes", "gpus_per_node", "time", "cpus_per_task"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise ConfigError(f"--{option.replace('_', '-')} must be at least 1; got {value}")
    for key in args.opts[0::2]:
        if key in SET_BY_SUBMIT:
            raise ConfigError(f"{key} is set by tools/submit.py: use {SET_BY_SUBMIT[key]}")
    output_dir = str(Path(args.output_dir or f"runs/{_job_name(args)}-{JOB_ID}").absolute())
    overrides = ["NUM_GPUS", str(args.nodes * args.gpus_per_node), *args.opts]
    load_config(args.cfg_file, [*overrides, "OUTPUT_DIR", output_dir])
    return str(Path(args.cfg_file).absolute()), overrides, output_dir


def submit(args: argparse.Namespace, call: tuple[str, list[str], str], cluster: str = "slurm") -> tuple:
    """Submit TrainJob's `call` (`job_call`) with the parsed command line's resources, through submitit's `cluster`
    executor ("slurm"; "debug" runs it in this process when its result is asked for); return (the submitit Job,
    its run folder)."""
    try:
        import submitit
    except ImportError:
        raise VMBError('tools/submit.py needs submitit: pip install -e ".[slurm]"') from None
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise VMBError("no SLURM here (sbatch is not on PATH): run tools/submit.py on a SLURM login node")
    executor = submitit.AutoExecutor(folder=LOG_DIR.absolute() / "%j", cluster=cluster)
    executor.update_parameters(
        name=_job_name(args), nodes=args.nodes, tasks_per_node=args.gpus_per_node,
        gpus_per_node=args.gpus_per_node, cpus_per_task=args.cpus_per_task, timeout_min=args.time,
        slurm_partition=args.partition, slurm_exclusive=True, slurm_mem="0",
        slurm_srun_args=["--kill-on-bad-exit=1"], slurm_additional_parameters={"requeue": True})
    job = executor.submit(TrainJob(), *call)
    return job, Path(call[2].replace(JOB_ID, job.job_id))


@exit_on_error
def main(argv: Sequence[str] | None = None) -> int:
    """`tools/submit.py`: submit a config's training to SLURM through submitit."""
    args = _parser().parse_args(argv)
    job, output_dir = submit(args, job_call(args))
    print(f"submitted job {job.job_id}: {args.nodes} node(s) x {args.gpus_per_node} GPU(s); run folder "
          f"{output_dir}, logs in {LOG_DIR / job.job_id}")
    return 0
