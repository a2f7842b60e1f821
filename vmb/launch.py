"""Who started this process: the one answer to "rank, world size, local rank, local world size" for every launch
mode, read from the launcher's environment. Free of torch, so that the data layer may ask too (its thread and
decoding-worker counts); vmb.engine.distributed acts on it.

`current()` is, in this order:

- torchrun (and run_net's own spawn, which sets the same variables): RANK and WORLD_SIZE are set. LOCAL_RANK
  (default 0), LOCAL_WORLD_SIZE (default: all of WORLD_SIZE), MASTER_ADDR and MASTER_PORT as torchrun set them.
  torchrun's variables win over SLURM's: a torchrun inside an srun step (tools/slurm/vmb.sbatch) is torchrun.
- srun, one task per GPU, no torchrun: a task of an srun step of several tasks, i.e. SLURM_STEP_ID and
  SLURM_PROCID are set and the step has more than one task. A batch script or an salloc shell also has
  SLURM_PROCID 0 but no step, and a one-task step (`srun python tools/run_net.py NUM_GPUS 8` on one node,
  salloc's interactive step) starts one process: run_net started there is not launched (it spawns its own
  processes, and NUM_GPUS beyond this machine's GPUs is refused) rather than waiting for peers that never come,
  or refusing NUM_GPUS 8 for one task. Rank SLURM_PROCID; world size SLURM_STEP_NUM_TASKS, else SLURM_NTASKS; local rank
  SLURM_LOCALID; local world size this node's (SLURM_NODEID's) entry of SLURM_STEP_TASKS_PER_NODE, else
  SLURM_TASKS_PER_NODE (SLURM's "4(x2),3": 4 tasks on each of the first two nodes, 3 on the third), else
  SLURM_NTASKS_PER_NODE. The rendezvous is `slurm_master`: MASTER_ADDR and MASTER_PORT from the environment
  when set, else the first host of SLURM_STEP_NODELIST, else SLURM_JOB_NODELIST (expanded with python-hostlist:
  "node[01-03,07]" is node01, node02, node03, node07; srun places task 0 on the step's first node) and
  `job_port(SLURM_JOB_ID)`.
- None: no launcher; run_net starts its processes itself.

How many processes share this process's CPUs (`processes_sharing_cores`, for thread and decoding-worker counts):
every training process on this machine (`processes_per_node`), except in an srun step whose task may use fewer
CPUs than the step has on this node (SLURM's tasks here x SLURM_CPUS_PER_TASK, default 1): srun bound it to CPUs
of its own (--cpus-per-task with task affinity), and it shares them with no one. A step confined as a whole (a
cgroup, no per-task binding) shows each task all the step's CPUs; a torchrun started by srun (one task per node)
passes its CPUs on to all its workers.

The port rule: `job_port(job_id)` = 20000 + job_id % 10000. Every task of a job computes the same port without
talking to the others, a requeued job (same SLURM_JOB_ID) gets the same one, jobs sharing a node get different
ones unless their ids differ by a multiple of 10000, and the range stays below Linux's ephemeral ports
(32768-60999). Two runs in one allocation at once need their own MASTER_PORT.
"""
from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass

import hostlist

from vmb.errors import VMBError

PORT_BASE, PORT_SPAN = 20000, 10000  # job_port's range: [PORT_BASE, PORT_BASE + PORT_SPAN)

# What a scheduler or launcher sends to stop a run it will restart (Slurm at preemption or the time limit,
# Kubernetes, torchrun passing it on: SIGTERM; submitit: SIGUSR2). vmb.engine.preemption catches them in the
# timed loop; data-loader workers ignore them, so that the training process stops them itself.
PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)


@dataclass(frozen=True)
class Launch:
    """This process's place in a launched run, and where the run's processes meet."""

    launcher: str  # "torchrun" or "srun"
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int  # processes of the run on this machine
    world_size_from: str  # the variable world_size was read from, for error messages
    master_addr: str | None = None
    master_port: int | None = None

    def torch_env(self) -> dict[str, str]:
        """torchrun's variables for this process: what torch.distributed's env:// initialisation reads."""
        env = {"RANK": str(self.rank), "WORLD_SIZE": str(self.world_size), "LOCAL_RANK": str(self.local_rank),
               "LOCAL_WORLD_SIZE": str(self.local_world_size)}
        if self.master_addr is not None:
            env["MASTER_ADDR"] = self.master_addr
        if self.master_port is not None:
            env["MASTER_PORT"] = str(self.master_port)
        return env


def _int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise VMBError(f"the launcher's {name}={env[name]!r} is not an integer") from None


def _first(env: Mapping[str, str], *names: str) -> str | None:
    """The first of `names` set (non-empty) in `env`."""
    return next((name for name in names if env.get(name)), None)


def job_port(job_id: str) -> int:
    """The rendezvous port of SLURM job `job_id` (the module's port rule)."""
    try:
        return PORT_BASE + int(job_id) % PORT_SPAN
    except ValueError:
        raise VMBError(f"SLURM_JOB_ID={job_id!r} is not a job number; set MASTER_PORT") from None


def slurm_master(environ: Mapping[str, str] | None = None) -> tuple[str, int]:
    """(MASTER_ADDR, MASTER_PORT) of the SLURM job this process runs in (the module's rule).

    Raises:
        VMBError: no node list or no job id to derive them from, and they are not set.
    """
    env = os.environ if environ is None else environ
    addr = env.get("MASTER_ADDR")
    if not addr:
        nodelist = _first(env, "SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST")
        if nodelist is None:
            raise VMBError("no SLURM_STEP_NODELIST or SLURM_JOB_NODELIST to find the first node: set MASTER_ADDR")
        try:
            addr = hostlist.expand_hostlist(env[nodelist])[0]
        except (hostlist.BadHostlist, IndexError):
            raise VMBError(f"{nodelist}={env[nodelist]!r} is not a SLURM node list: set MASTER_ADDR") from None
    if env.get("MASTER_PORT"):
        return addr, _int(env, "MASTER_PORT")
    if not env.get("SLURM_JOB_ID"):
        raise VMBError("no SLURM_JOB_ID to derive the rendezvous port from: set MASTER_PORT")
    return addr, job_port(env["SLURM_JOB_ID"])


def slurm_endpoint(environ: Mapping[str, str] | None = None) -> str:
    """"HOST:PORT" of `slurm_master`, for torchrun's --rdzv-endpoint (tools/slurm/vmb.sbatch)."""
    addr, port = slurm_master(environ)
    return f"{addr}:{port}"


def _slurm_local_world_size(env: Mapping[str, str]) -> int:
    name = _first(env, "SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE")
    if name is None:
        if not env.get("SLURM_NTASKS_PER_NODE"):
            raise VMBError("srun set no SLURM_STEP_TASKS_PER_NODE, SLURM_TASKS_PER_NODE or SLURM_NTASKS_PER_NODE: "
                           "cannot tell how many tasks share this node")
        return _int(env, "SLURM_NTASKS_PER_NODE")
    try:
        per_node = hostlist.parse_slurm_tasks_per_node(env[name])
    except hostlist.BadHostlist:
        raise VMBError(f"{name}={env[name]!r} is not SLURM's tasks-per-node form (e.g. 4(x2),3)") from None
    if len(set(per_node)) == 1:
        return per_node[0]
    node = _int(env, "SLURM_NODEID") if env.get("SLURM_NODEID") else -1
    if not 0 <= node < len(per_node):
        raise VMBError(f"{name}={env[name]!r} differs between nodes and SLURM_NODEID={env.get('SLURM_NODEID')!r} "
                       f"does not pick one of its {len(per_node)} nodes")
    return per_node[node]


def _torchrun(env: Mapping[str, str]) -> Launch:
    world_size = _int(env, "WORLD_SIZE")
    return Launch(
        "torchrun", rank=_int(env, "RANK"), world_size=world_size,
        local_rank=_int(env, "LOCAL_RANK") if env.get("LOCAL_RANK") else 0,
        local_world_size=_int(env, "LOCAL_WORLD_SIZE") if env.get("LOCAL_WORLD_SIZE") else world_size,
        world_size_from="WORLD_SIZE", master_addr=env.get("MASTER_ADDR") or None,
        master_port=_int(env, "MASTER_PORT") if env.get("MASTER_PORT") else None)


def _srun(env: Mapping[str, str]) -> Launch | None:
    """The launch of an srun task, None for a step of one task."""
    world_size_from = _first(env, "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS")
    if world_size_from is None:
        raise VMBError("srun set neither SLURM_STEP_NUM_TASKS nor SLURM_NTASKS: cannot tell the number of tasks")
    world_size = _int(env, world_size_from)
    if world_size == 1:
        return None
    addr, port = slurm_master(env)
    return Launch(
        "srun", rank=_int(env, "SLURM_PROCID"), world_size=world_size,
        local_rank=_int(env, "SLURM_LOCALID") if env.get("SLURM_LOCALID") else 0,
        local_world_size=_slurm_local_world_size(env), world_size_from=world_size_from,
        master_addr=addr, master_port=port)


def current(environ: Mapping[str, str] | None = None) -> Launch | None:
    """This process's launch (the module's rules), or None when no launcher started it.

    Raises:
        VMBError: a launcher's variable is malformed, or srun's leave the rendezvous or the layout undecided.
    """
    env = os.environ if environ is None else environ
    if env.get("RANK") and env.get("WORLD_SIZE"):
        return _torchrun(env)
    if env.get("SLURM_STEP_ID") and env.get("SLURM_PROCID"):
        return _srun(env)
    return None


def _slurm_step_cpus_here(env: Mapping[str, str]) -> int:
    """CPUs of this srun step on this node: SLURM's tasks here x SLURM_CPUS_PER_TASK (default 1)."""
    per_task = _int(env, "SLURM_CPUS_PER_TASK") if env.get("SLURM_CPUS_PER_TASK") else 1
    return _slurm_local_world_size(env) * per_task


def processes_sharing_cores(cores: int, environ: Mapping[str, str] | None = None) -> int:
    """Training processes that share this process's `cores` usable CPUs (its affinity; the module's rule)."""
    env = os.environ if environ is None else environ
    if env.get("SLURM_STEP_ID") and cores < _slurm_step_cpus_here(env):
        return 1
    return processes_per_node(env)


def processes_per_node(environ: Mapping[str, str] | None = None) -> int:
    """Training processes on this machine: LOCAL_WORLD_SIZE, else all of WORLD_SIZE (a launcher that sets only
    WORLD_SIZE: the safe side for thread and worker counts), else an srun step's tasks on this node, else 1."""
    env = os.environ if environ is None else environ
    if env.get("LOCAL_WORLD_SIZE") or env.get("WORLD_SIZE"):
        return _int(env, "LOCAL_WORLD_SIZE" if env.get("LOCAL_WORLD_SIZE") else "WORLD_SIZE")
    launch = current(env)
    return launch.local_world_size if launch else 1
