"""The environment cell's probe: GPUs, driver (read even where torch sees no GPU: NVML, else
/proc/driver/nvidia/version) and whether it is new enough for torch's CUDA build (`driver_verdict`), CUDA runtime,
arch list, NCCL, native bf16, NVML energy counter, CPU, usable cores, memory, library versions
(`probe_environment`).
"""
from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

# Minimum Linux driver per CUDA major version, from NVIDIA's CUDA Toolkit release notes ("CUDA Toolkit and Minimum
# Required Driver Version for CUDA Minor Version Compatibility"): CUDA 12.x needs >= 525.60.13, CUDA 13.x needs
# >= 580.65.06. torch's CUDA 13 wheels (torch 2.14.1+cu130) on an older driver only show
# torch.cuda.is_available() False.
MIN_DRIVER = {12: "525.60.13", 13: "580.65.06"}


def version_tuple(version: str) -> tuple[int, ...]:
    """"580.65.06" -> (580, 65, 6)."""
    return tuple(int(part) for part in re.findall(r"\d+", version))


def proc_driver_version(text: str) -> str | None:
    """The driver version in /proc/driver/nvidia/version's "NVRM version" line (proprietary or open module)."""
    for line in text.splitlines():
        if line.startswith("NVRM version"):
            found = re.search(r"\s(\d+\.\d+(?:\.\d+)?)\s", line + " ")
            return found.group(1) if found else None
    return None


def driver_verdict(driver: str | None, cuda_runtime: str | None, cuda_available: bool) -> tuple[bool | None, str]:
    """(ok, sentence): whether the NVIDIA driver `driver` can run torch's CUDA `cuda_runtime` build (MIN_DRIVER).
    ok is None where it cannot be told (a CPU-only build, no driver found, a CUDA major not in the table)."""
    if not cuda_runtime:
        return None, "CPU-only torch build (torch.version.cuda is None): no GPU can be used"
    major = version_tuple(cuda_runtime)[0]
    need = MIN_DRIVER.get(major)
    if driver is None:
        if cuda_available:
            return None, f"torch's CUDA {cuda_runtime} build sees a GPU; the driver version could not be read"
        return None, (f"no NVIDIA driver found (NVML, /proc/driver/nvidia/version): torch's CUDA {cuda_runtime} build "
                      f"has no GPU to use")
    if need is None:
        return None, f"driver {driver}; the minimum driver for CUDA {major}.x is not in this check's table"
    if version_tuple(driver) < version_tuple(need):
        older = ", ".join(f"CUDA {m}.x needs {v} or newer" for m, v in sorted(MIN_DRIVER.items()) if m < major)
        return False, (f"driver {driver} is too old for torch's CUDA {cuda_runtime} build: CUDA {major}.x needs driver "
                       f"{need} or newer on Linux, so torch.cuda.is_available() is False. Upgrade the driver"
                       + (f", or install a torch build for an older CUDA ({older})" if older else ""))
    verdict = f"driver {driver} is new enough for CUDA {major}.x (minimum {need})"
    if not cuda_available:
        verdict += "; yet torch sees no GPU (check CUDA_VISIBLE_DEVICES and the /dev/nvidia* device files)"
    return True, verdict


def _nvml_probe() -> dict:
    """Driver version and GPUs as NVML sees them (works where torch's CUDA build does not), or the error."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, ...
        return {"error": f"{type(exc).__name__}: {exc}"}
    try:
        def text(value) -> str:
            return value.decode() if isinstance(value, bytes) else str(value)

        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            gpus.append({"index": index, "name": text(pynvml.nvmlDeviceGetName(handle)),
                         "memory_gib": round(pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**30, 1)})
        return {"driver": text(pynvml.nvmlSystemGetDriverVersion()), "gpus": gpus}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        pynvml.nvmlShutdown()


def _read_driver(nvml: dict) -> tuple[str | None, str | None]:
    """(driver version, where it was read)."""
    if nvml.get("driver"):
        return nvml["driver"], "NVML"
    try:
        found = proc_driver_version(Path("/proc/driver/nvidia/version").read_text())
    except OSError:
        found = None
    return (found, "/proc/driver/nvidia/version") if found else (None, None)


def _dali_version() -> str | None:
    try:
        import nvidia.dali

        return str(nvidia.dali.__version__)
    except Exception:  # not installed, or broken: not importable
        return None


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def probe_environment() -> dict:
    """This machine's GPUs, driver, CUDA stack, CPU and libraries (see the module docstring)."""
    import torch

    from vmb.data.loader import usable_cores
    from vmb.record.energy import GpuEnergy
    from vmb.record.system import describe_system

    cuda = torch.cuda.is_available()
    count = torch.cuda.device_count() if cuda else 0
    system = describe_system("cuda" if cuda else "cpu", max(1, count), 1)
    nvml = _nvml_probe()
    driver, driver_source = _read_driver(nvml)
    if cuda:
        gpus = []
        for index in range(count):
            props = torch.cuda.get_device_properties(index)
            gpus.append({"index": index, "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                         "capability": f"sm_{props.major}{props.minor}",
                         "pci_bus_id": f"{props.pci_domain_id:08x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"})
    else:
        gpus = nvml.get("gpus", [])
    try:
        nccl = ".".join(map(str, torch.cuda.nccl.version()))
    except Exception as exc:  # a build without NCCL
        nccl = f"unavailable ({type(exc).__name__})"
    driver_ok, verdict = driver_verdict(driver, torch.version.cuda, cuda)
    dali = _dali_version()
    return {
        "cuda_available": cuda, "cuda_devices": count, "gpus": gpus,
        "driver_version": driver, "driver_source": driver_source, "nvml": nvml.get("error", "ok"),
        "cuda_runtime": torch.version.cuda, "min_driver": MIN_DRIVER.get(version_tuple(torch.version.cuda or "0")[0]),
        "driver_ok": driver_ok, "driver_verdict": verdict,
        "cuda_arch_list": torch.cuda.get_arch_list(), "nccl_version": nccl,
        "bf16_native": torch.cuda.is_bf16_supported(including_emulation=False) if cuda else None,
        "nvml_energy_readable": GpuEnergy(torch.device("cuda", 0)).unavailable is None if cuda else None,
        "cudnn_version": system["cudnn_version"],
        "cpu_model": system["host_processor_model_name"], "cpu_count": system["host_processor_core_count"],
        "usable_cores": usable_cores(), "memory": system["host_memory_capacity"],
        "os": system["operating_system"], "python": system["python_version"],
        "versions": {"torch": torch.__version__, "torchvision": _package_version("torchvision"),
                     "torchcodec": _package_version("torchcodec"), "dali": dali or "not importable",
                     "av": _package_version("av"), "pytorchvideo": _package_version("pytorchvideo")},
        "dali_importable": dali is not None,
    }
