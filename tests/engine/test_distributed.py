"""The device/thread policy of vmb.engine.distributed, without starting processes."""
import os

import pytest
import torch

from vmb.engine import distributed
from vmb.errors import ConfigError


@pytest.mark.parametrize("cores, processes, workers, expected", [
    (2, 1, 0, 2),   # no decode workers: every core trains
    (2, 1, 1, 1),   # the smoke configs: one core decodes, one trains
    (2, 2, 1, 1),   # never below one thread
    (16, 4, 2, 2),  # 4 processes share 16 cores, each keeps 2 for its workers
])
def test_cpu_threads_leave_cores_to_decode_workers(cores, processes, workers, expected):
    assert distributed.cpu_threads(cores, processes, workers) == expected


def test_setup_without_torchrun_is_one_cpu_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    threads = torch.get_num_threads()
    try:
        ctx = distributed.setup(num_gpus=0, num_workers=0)
        assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.device.type) == (0, 1, True, "cpu")
        assert torch.get_num_threads() == distributed.cpu_threads(os.cpu_count() or 1, 1, 0)
        assert distributed.processes_to_spawn(0) == 1
    finally:
        torch.set_num_threads(threads)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_gpus_without_cuda_is_a_one_line_error():
    for call in (lambda: distributed.processes_to_spawn(4), lambda: distributed.setup(num_gpus=4)):
        with pytest.raises(ConfigError, match="NUM_GPUS 4 but no CUDA device is visible.*NUM_GPUS 0"):
            call()


def test_cuda_processes_get_the_thread_policy_too(monkeypatch):
    """A GPU process keeps its share of the cores minus its workers, not torch's one thread per core."""
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(distributed, "usable_cores", lambda: 16)
    threads = torch.get_num_threads()
    try:
        ctx = distributed.setup(num_gpus=2, num_workers=3)
        assert ctx.device.type == "cuda"
        assert torch.get_num_threads() == distributed.cpu_threads(16, 2, 3) == 5
    finally:
        torch.set_num_threads(threads)


def _launcher_env(monkeypatch, **env):
    """Exactly `env` of the launcher's variables (no MASTER_ADDR: joining a process group fails at once)."""
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_launcher_world_size_must_be_num_gpus_on_cuda(monkeypatch):
    """torchrun --nproc_per_node 8 with NUM_GPUS 4 would train on 8 GPUs while config.yaml says 4: refused, with
    one line, before the process group or anything else is set up."""
    _launcher_env(monkeypatch, RANK="0", WORLD_SIZE="8", LOCAL_RANK="0", LOCAL_WORLD_SIZE="8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ConfigError, match=r"started 8 processes \(WORLD_SIZE\) but NUM_GPUS is 4.*set NUM_GPUS 8"):
        distributed.setup(num_gpus=4)
    distributed.check_world_size(8)  # agreeing: accepted


def test_cpu_runs_take_the_launcher_s_process_count(monkeypatch):
    """NUM_GPUS 0 runs on the CPU in as many processes as the launcher starts (result.json's n_devices)."""
    _launcher_env(monkeypatch, RANK="0", WORLD_SIZE="2")
    distributed.check_world_size(0)
    assert distributed.run_processes(0) == 2


@pytest.mark.parametrize("env, num_gpus, expected", [
    ({}, 0, 1),                                   # the CPU: one process
    ({}, 4, 4),                                   # run_net/test_net spawn one per GPU (no GPU needed to answer)
    ({"RANK": "0", "WORLD_SIZE": "8"}, 8, 8),     # under a launcher: its count
])
def test_run_processes(monkeypatch, env, num_gpus, expected):
    _launcher_env(monkeypatch, **env)
    assert distributed.run_processes(num_gpus) == expected


def test_one_rule_for_processes_per_node(monkeypatch):
    """Threads, loader workers and the node count all read LOCAL_WORLD_SIZE the same way; without it, every
    process of WORLD_SIZE is taken to share this machine (the safe side for threads and workers)."""
    from vmb.launch import processes_per_node

    _launcher_env(monkeypatch, RANK="1", WORLD_SIZE="4")
    monkeypatch.setattr(distributed, "usable_cores", lambda: 16)
    threads = torch.get_num_threads()
    try:
        distributed.setup(num_gpus=0, num_workers=1)
    except (ValueError, RuntimeError):  # no rendezvous to join here; the thread count is set before
        pass
    finally:
        assert processes_per_node() == 4
        assert torch.get_num_threads() == distributed.cpu_threads(16, 4, 1) == 3
        torch.set_num_threads(threads)


def test_test_net_starts_one_process_per_gpu(monkeypatch, tmp_path):
    """tools/test_net.py with NUM_GPUS 4 (no launcher) starts 4 processes, as run_net does."""
    from vmb.cli import test_net

    _launcher_env(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    launched = []
    monkeypatch.setattr(distributed, "launch", lambda processes, fn, *args: launched.append((processes, fn)))
    assert test_net.main(["--cfg", "configs/smoke/X3D.yaml", "--checkpoint", str(tmp_path / "c.pyth"),
                           "NUM_GPUS", "4"]) == 0
    assert launched == [(4, test_net._spawned_test)]
