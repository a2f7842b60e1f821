"""Energy a GPU consumed during the timed run, from NVML's cumulative energy counter (nvidia-ml-py).

`nvmlDeviceGetTotalEnergyConsumption` counts millijoules since the driver loaded (Volta and newer GPUs), so
the difference between run_start and run_stop is the board's energy over the timed interval, idle time
included. Each process reads its own GPU, found by PCI bus id (robust to CUDA_VISIBLE_DEVICES ordering). On
the CPU, or where NVML or the counter is missing, nothing is measured: the result says so, never 0.
"""
from __future__ import annotations

import torch

NOT_MEASURED_CPU = "not measured: CPU run (NVML reads GPUs only)"
NOT_MEASURED_NVML = "not measured: NVML or its energy counter is unavailable on this GPU"
NOT_MEASURED_RESUMED = "not measured: the run was resumed (the energy of its interrupted attempts is unknown)"


def nvml_handle(device: torch.device):
    """(pynvml module, NVML handle) of a CUDA device's GPU, found by PCI bus id (robust to CUDA_VISIBLE_DEVICES
    ordering); raises where nvidia-ml-py, the NVML library or the device is missing."""
    import pynvml

    pynvml.nvmlInit()
    props = torch.cuda.get_device_properties(device)
    bus_id = f"{props.pci_domain_id:08x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
    return pynvml, pynvml.nvmlDeviceGetHandleByPciBusId(bus_id)


class GpuEnergy:
    """The energy counter of the GPU `device` (a CUDA device of this process), or of none."""

    def __init__(self, device: torch.device) -> None:
        self._handle, self._pynvml, self.start_mj = None, None, None
        self.unavailable = NOT_MEASURED_CPU if device.type != "cuda" else None
        if device.type != "cuda":
            return
        try:
            self._pynvml, self._handle = nvml_handle(device)
            self._pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)  # raises where the counter is missing
        except Exception:  # ImportError, NVMLError (no library, no such device, not supported): not measured
            self._handle, self.unavailable = None, NOT_MEASURED_NVML

    def _read_mj(self) -> int | None:
        if self._handle is None:
            return None
        try:
            return int(self._pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except Exception:  # the driver stopped answering: not measured rather than a wrong number
            return None

    def start(self) -> None:
        """Read the counter at run_start."""
        self.start_mj = self._read_mj()

    def joules(self) -> float | None:
        """Joules since `start()`, or None when not measured (see `unavailable`)."""
        now = self._read_mj()
        if now is None or self.start_mj is None or now < self.start_mj:
            self.unavailable = self.unavailable or NOT_MEASURED_NVML
            return None
        return (now - self.start_mj) / 1000.0
