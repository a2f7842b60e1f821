"""vmb.speed.gpu_monitor on the CPU: the host-sync counter's parsing of torch's sync warnings (torch's sync debug
mode replaced by a stand-in), its CPU no-op, and the NVML utilisation sampler over a fake pynvml."""
from __future__ import annotations

import sys
import time
import types
import warnings
from types import SimpleNamespace

import pytest
import torch

from vmb.speed.gpu_monitor import UtilizationSampler, count_host_syncs

SYNC = "called a synchronizing CUDA operation (Triggered internally at /pytorch/c10/cuda/CUDAFunctions.cpp:142.)"


@pytest.fixture
def sync_debug_mode(monkeypatch):
    """torch.cuda's sync debug mode as a plain variable (no GPU here); returns the list of modes set."""
    state = {"mode": 0}
    set_modes: list = []

    def set_mode(mode):
        set_modes.append(mode)
        state["mode"] = {"default": 0, "warn": 1, "error": 2}.get(mode, mode)

    monkeypatch.setattr(torch.cuda, "get_sync_debug_mode", lambda: state["mode"])
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", set_mode)
    return set_modes


def test_counts_the_sync_warnings_and_restores_the_mode(sync_debug_mode):
    with warnings.catch_warnings(record=True) as others:
        warnings.simplefilter("always")
        with count_host_syncs(torch.device("cuda", 0)) as syncs:
            assert sync_debug_mode == ["warn"]
            for _ in range(3):  # one call site syncing in a loop counts every time
                warnings.warn(SYNC, UserWarning)
            assert syncs.count == 3
            warnings.warn("unrelated", RuntimeWarning)
            warnings.warn("called a synchronizing CUDA operation", RuntimeWarning)  # not torch's UserWarning
            warnings.warn("a UserWarning that is not a sync", UserWarning)
    assert syncs.count == 3  # readable after the block
    assert sync_debug_mode == ["warn", 0]  # the previous mode is back
    assert [str(w.message) for w in others] == ["unrelated", "called a synchronizing CUDA operation",
                                                "a UserWarning that is not a sync"]  # re-emitted, not swallowed


def test_only_the_loop_s_own_thread_counts(sync_debug_mode):
    """A device-decoding thread's syncs make only that thread wait: counted apart, not as the loop's."""
    import threading

    with count_host_syncs(torch.device("cuda", 0)) as syncs:
        warnings.warn(SYNC, UserWarning)
        decoder = threading.Thread(target=lambda: [warnings.warn(SYNC, UserWarning) for _ in range(4)])
        decoder.start()
        decoder.join()
    assert (syncs.count, syncs.other_threads) == (1, 4)


def test_the_mode_is_restored_when_the_block_raises(sync_debug_mode):
    with pytest.raises(ValueError):
        with count_host_syncs("cuda") as syncs:
            warnings.warn(SYNC, UserWarning)
            raise ValueError("stop")
    assert syncs.count == 1 and sync_debug_mode == ["warn", 0]


def test_a_no_op_off_cuda(monkeypatch):
    def no_gpu(*_args):
        raise AssertionError("the sync debug mode must not be touched off CUDA")

    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", no_gpu)
    monkeypatch.setattr(torch.cuda, "get_sync_debug_mode", no_gpu)
    with pytest.warns(UserWarning):
        with count_host_syncs(torch.device("cpu")) as syncs:
            warnings.warn(SYNC, UserWarning)  # not recorded: passes through
    assert syncs.count == 0
    assert count_host_syncs().cuda is torch.cuda.is_available()


def fake_pynvml(readings: list[int], fail_init: bool = False) -> types.ModuleType:
    """A pynvml stand-in: one GPU at bus 0000:17:00.0 whose utilisation reads `readings` in turn (the last one
    repeated; an exception is raised); records the bus ids looked up and counts the reads."""
    module = types.ModuleType("pynvml")
    module.looked_up = []
    module.reads = 0

    def init():
        if fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def handle_by_bus(bus_id):
        module.looked_up.append(bus_id)
        return "handle-17"

    def utilization(handle):
        assert handle == "handle-17"
        value = readings[min(module.reads, len(readings) - 1)]
        module.reads += 1
        if isinstance(value, Exception):
            raise value
        return SimpleNamespace(gpu=value, memory=0)

    module.nvmlInit, module.nvmlDeviceGetHandleByPciBusId = init, handle_by_bus
    module.nvmlDeviceGetUtilizationRates = utilization
    return module


@pytest.fixture
def gpu_at_bus_17(monkeypatch):
    props = SimpleNamespace(pci_domain_id=0, pci_bus_id=0x17, pci_device_id=0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props)


def test_utilization_sampler_averages_the_samples_of_the_device_gpu(monkeypatch, gpu_at_bus_17):
    nvml = fake_pynvml([20, 40, 60, 80])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    sampler = UtilizationSampler(torch.device("cuda", 0), period_s=0.01)
    assert sampler.unavailable is None and nvml.looked_up == ["00000000:17:00.0"]  # by PCI bus id
    sampler.start()
    deadline = time.monotonic() + 5
    while nvml.reads < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    mean = sampler.stop()
    reads = nvml.reads
    time.sleep(0.05)
    assert nvml.reads == reads  # the thread has stopped
    assert sampler.samples[:4] == [20.0, 40.0, 60.0, 80.0] and len(sampler.samples) == reads
    assert mean == pytest.approx(sum(sampler.samples) / len(sampler.samples))


def test_utilization_is_none_without_nvml_or_off_cuda(monkeypatch, gpu_at_bus_17):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([50], fail_init=True))
    sampler = UtilizationSampler(torch.device("cuda", 0))
    sampler.start()
    assert sampler.stop() is None and "NVML unavailable" in sampler.unavailable
    monkeypatch.setitem(sys.modules, "pynvml", None)  # nvidia-ml-py not installed: import fails
    assert UtilizationSampler(torch.device("cuda", 0)).stop() is None
    cpu = UtilizationSampler(torch.device("cpu"))
    cpu.start()
    assert cpu.stop() is None and cpu.unavailable == "not measured: not a CUDA device"


def test_a_driver_that_stops_answering_gives_no_mean(monkeypatch, gpu_at_bus_17):
    nvml = fake_pynvml([30, 30, RuntimeError("GPU is lost")])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    sampler = UtilizationSampler(torch.device("cuda", 0), period_s=0.01)
    sampler.start()
    sampler._thread.join(timeout=5)  # the failed read ends the thread
    assert sampler.samples == [30.0, 30.0]
    assert sampler.stop() is None and "stopped answering" in sampler.unavailable
