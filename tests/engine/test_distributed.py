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
