"""The one place that decides the device and talks to torch.distributed.

The process rule: NUM_GPUS is the number of GPUs the run uses, over all its machines, with one process per GPU;
NUM_GPUS 0 runs on the CPU. Without a launcher, `tools/run_net.py` and `tools/test_net.py` start NUM_GPUS
processes on this machine themselves (one on the CPU). Under a launcher (torchrun, or srun with one task per GPU;
vmb.launch says which one started this process, and its rank, world size, local rank and local world size) the
launcher starts them, and on CUDA its world size must equal NUM_GPUS, so that the recorded config says what ran;
on the CPU the launcher's process count is the run's (result.json's n_devices). Processes on this machine:
`vmb.launch.processes_per_node`; those sharing a process's CPUs: `vmb.launch.processes_sharing_cores`. Under
srun, `setup` exports torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
MASTER_PORT), as run_net's own spawn does, so that everything after it sees one kind of launch.

A process that dies: torchrun's agent, `srun --kill-on-bad-exit=1` (tools/slurm/vmb.sbatch, tools/submit.py) and
run_net's own spawn stop the others within seconds. A process that hangs, or a peer lost without its launcher
noticing, is what the collective timeout is for: joining the process group and every collective fail after
`collective_timeout()` without progress, 10 minutes unless VMB_COLLECTIVE_TIMEOUT_S (seconds) says otherwise, and
the process ends (TORCH_NCCL_ASYNC_ERROR_HANDLING=1, as torchrun sets it, unless already set: NCCL's watchdog
aborts the communicators and tears the process down rather than leaving it blocked on the GPU). The timeout
must exceed the longest time one process legitimately waits for another at a collective: rank 0 writing the
checkpoint (the others wait in the next step's all-reduce), the evaluation pass (every process evaluates an equal
shard and waits only for the slowest at the final all-reduce), and, before run_start, each node's data pre-flight
(it opens the header of every listed video; the others wait in its all-reduce) and the synthetic data a smoke
config writes on first use. Raise VMB_COLLECTIVE_TIMEOUT_S where the pre-flight of a slow filesystem takes longer.
"""
from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from vmb.data.loader import usable_cores
from vmb.errors import ConfigError, VMBError
from vmb.launch import current as current_launch
from vmb.launch import processes_sharing_cores

COLLECTIVE_TIMEOUT_S = 600  # the module's collective timeout, seconds
COLLECTIVE_TIMEOUT_ENV = "VMB_COLLECTIVE_TIMEOUT_S"  # overrides it


@dataclass(frozen=True)
class Context:
    """Where this process runs: its rank among `world_size` processes and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def use_cuda(num_gpus: int) -> bool:
    """CUDA is used when the config asks for GPUs (NUM_GPUS > 0), the CPU for NUM_GPUS 0.

    Raises:
        ConfigError: GPUs are asked for but no CUDA device is visible (training on the CPU instead would
            silently measure another machine).
    """
    if num_gpus > 0 and not torch.cuda.is_available():
        raise ConfigError(f"NUM_GPUS {num_gpus} but no CUDA device is visible (torch.cuda.is_available() is "
                          "False); set NUM_GPUS 0 to train on the CPU")
    return num_gpus > 0


def check_world_size(num_gpus: int) -> None:
    """Under a launcher on CUDA, its world size must be NUM_GPUS (the module's process rule).

    Raises:
        ConfigError: they differ.
    """
    started = current_launch()
    if started and use_cuda(num_gpus) and started.world_size != num_gpus:
        world_size = started.world_size
        raise ConfigError(f"the launcher started {world_size} processes ({started.world_size_from}) but NUM_GPUS is "
                          f"{num_gpus}: NUM_GPUS is the run's GPU count over all machines, one process each; set "
                          f"NUM_GPUS {world_size} or start {num_gpus} processes")


def run_processes(num_gpus: int) -> int:
    """The processes a run of NUM_GPUS `num_gpus` has (each takes an equal share of the global batch): the
    launcher's world size under one, else NUM_GPUS (one per GPU), or 1 on the CPU. Needs no GPU to answer."""
    started = current_launch()
    if started:
        return started.world_size
    return max(1, num_gpus)


def processes_to_spawn(num_gpus: int) -> int:
    """How many processes `run_net.py` starts itself: NUM_GPUS on CUDA, 1 on the CPU or under a launcher."""
    if current_launch() or not use_cuda(num_gpus):
        return 1
    if num_gpus > torch.cuda.device_count():
        raise ConfigError(f"NUM_GPUS {num_gpus} but only {torch.cuda.device_count()} CUDA device(s) visible")
    return num_gpus


def free_port() -> int:
    """A TCP port free on this machine now, for a process group's rendezvous."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _spawned_entry(local_rank: int, world_size: int, port: int, fn: Callable, args: tuple) -> None:
    os.environ.update(RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(world_size),
                      LOCAL_WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    fn(*args)


def launch(num_processes: int, fn: Callable, *args) -> None:
    """Run `fn(*args)` in `num_processes` processes on this machine (in this process when 1)."""
    if num_processes == 1:
        fn(*args)
        return
    try:
        torch.multiprocessing.spawn(_spawned_entry, args=(num_processes, free_port(), fn, args),
                                    nprocs=num_processes, join=True)
    except torch.multiprocessing.ProcessExitedException as exc:
        raise VMBError(f"training process {exc.error_index} exited with status {exc.exit_code}; "
                       "its error is printed above") from None


def cpu_threads(cpu_count: int, local_processes: int, num_workers: int) -> int:
    """Intra-op threads for a training process: its share of the cores minus its decoding workers.

    OpenMP threads spin while they wait, so oversubscribing the cores (threads + workers > cores) makes
    every step several times slower rather than a little slower.
    """
    return max(1, cpu_count // local_processes - num_workers)


def collective_timeout() -> timedelta:
    """How long a collective may wait for its peers (the module's rule): VMB_COLLECTIVE_TIMEOUT_S, else 10 minutes.

    Raises:
        ConfigError: VMB_COLLECTIVE_TIMEOUT_S is not a positive number of seconds.
    """
    text = os.environ.get(COLLECTIVE_TIMEOUT_ENV) or str(COLLECTIVE_TIMEOUT_S)
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise ConfigError(f"{COLLECTIVE_TIMEOUT_ENV}={text!r}: give the collective timeout in seconds, e.g. 1200")
    return timedelta(seconds=seconds)


def cuda_index(local_rank: int) -> int:
    """The CUDA device of local rank `local_rank`: its own index among the GPUs this process sees, or the one GPU
    it sees when the launcher binds one GPU per task (srun --gpus-per-task 1).

    Raises:
        ConfigError: more processes on this machine than GPUs it shows them.
    """
    count = torch.cuda.device_count()
    if count == 1:
        return 0
    if local_rank >= count:
        raise ConfigError(f"local rank {local_rank} but only {count} CUDA device(s) visible on this machine: start "
                          "one process per GPU")
    return local_rank


def setup(num_gpus: int, num_workers: int = 0) -> Context:
    """Check the process rule, join the process group if there is one (with the collective timeout), pick this
    process's device, and set its thread count
    (`cpu_threads`; on CUDA too: torch's default, one thread per core in every process, would oversubscribe
    the cores the data-loader workers need)."""
    cuda = use_cuda(num_gpus)
    check_world_size(num_gpus)
    started = current_launch()
    cores = usable_cores()
    torch.set_num_threads(cpu_threads(cores, processes_sharing_cores(cores), num_workers))
    if started is None:
        return Context(0, 1, 0, torch.device("cuda", 0) if cuda else torch.device("cpu"))
    timeout = collective_timeout()
    if started.launcher == "srun":
        os.environ.update(started.torch_env())  # torchrun's variables, as torchrun and run_net's spawn set them
    os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    device = torch.device("cuda", cuda_index(started.local_rank)) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=timeout)
    return Context(started.rank, started.world_size, started.local_rank, device)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over all processes (in place; a no-op with one process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def sync_bn_buffers(model: torch.nn.Module) -> None:
    """Average every BatchNorm's running_mean and running_var over all processes, in one all-reduce (a
    no-op with one process); call it on every process before evaluating or checkpointing.

    DDP averages gradients, not BatchNorm statistics: each process updates its buffers with its own
    sub-batch (from rank 0's copy before each forward unless DDP has `forward_sync_buffers=False`), so
    without this each process evaluates a different model and top-1 depends on the process count. The EMA
    is linear and the sub-batches are equal, so with `forward_sync_buffers=False` the average running_mean
    is exactly the EMA of the global batch's means; the average running_var is the EMA of the sub-batches'
    variances, which leaves out the spread of the sub-batch means around the global mean.
    num_batches_tracked is equal on every process already.
    """
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return
    buffers = [buffer for module in model.modules()
               if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.track_running_stats
               for buffer in (module.running_mean, module.running_var)]
    if not buffers:
        return
    flat = torch.cat([buffer.reshape(-1) for buffer in buffers])  # (sum of the buffers' sizes,)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    for buffer, average in zip(buffers, flat.split([buffer.numel() for buffer in buffers])):
        buffer.copy_(average.view_as(buffer))


def broadcast_object(obj, src: int = 0):
    """`obj` from rank `src`, on every process."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
