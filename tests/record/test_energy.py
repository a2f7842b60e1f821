"""GPU energy over the timed run: NVML's counter difference per GPU, or "not measured" with the reason."""
from __future__ import annotations

import sys
import types

import pytest
import torch

from vmb.engine import train
from vmb.engine.distributed import Context
from vmb.record import energy
from vmb.record.energy import GpuEnergy


class FakeNvml(types.ModuleType):
    """pynvml with one GPU whose counter advances by `step_mj` per read; `supported` False raises like an old GPU."""

    def __init__(self, step_mj: int = 2500, supported: bool = True) -> None:
        super().__init__("pynvml")
        self.counter, self.step_mj, self.supported, self.bus_ids = 10_000, step_mj, supported, []

    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetHandleByPciBusId(self, bus_id: str) -> str:
        self.bus_ids.append(bus_id)
        return "gpu0"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        if not self.supported:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        self.counter += self.step_mj
        return self.counter


@pytest.fixture
def fake_gpu(monkeypatch):
    def install(**kwargs) -> FakeNvml:
        nvml = FakeNvml(**kwargs)
        monkeypatch.setitem(sys.modules, "pynvml", nvml)
        props = types.SimpleNamespace(pci_domain_id=0, pci_bus_id=0x1b, pci_device_id=0)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props)
        return nvml

    return install


def test_cpu_is_not_measured_never_zero():
    meter = GpuEnergy(torch.device("cpu"))
    meter.start()
    assert meter.joules() is None and meter.unavailable == energy.NOT_MEASURED_CPU


def test_gpu_energy_is_the_counter_difference(fake_gpu):
    nvml = fake_gpu(step_mj=2500)
    meter = GpuEnergy(torch.device("cuda", 0))
    meter.start()
    assert meter.joules() == pytest.approx(2.5)  # one read later: 2500 mJ
    assert nvml.bus_ids == ["00000000:1b:00.0"] and meter.unavailable is None


def test_gpu_without_the_counter_is_not_measured(fake_gpu):
    fake_gpu(supported=False)
    meter = GpuEnergy(torch.device("cuda", 0))
    meter.start()
    assert meter.joules() is None and meter.unavailable == energy.NOT_MEASURED_NVML


def test_missing_nvml_library_is_not_measured(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    assert GpuEnergy(torch.device("cuda", 0)).unavailable == energy.NOT_MEASURED_NVML


def test_gathered_energy_has_every_device_and_the_total(fake_gpu):
    fake_gpu(step_mj=1000)
    meter = GpuEnergy(torch.device("cuda", 0))
    meter.start()
    assert train._gather_energy(meter, Context(0, 1, 0, torch.device("cpu"))) == {"per_device": [1.0], "total": 1.0}
    cpu = GpuEnergy(torch.device("cpu"))
    assert train._gather_energy(cpu, Context(0, 1, 0, torch.device("cpu"))) is None
    assert cpu.unavailable == energy.NOT_MEASURED_CPU
