"""System description recorded at the start of every run (MLPerf's system-description fields), and its
one-line summary for the scorer. torch is imported where the description is made, so that the scorer does
not load it."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata

import vmb


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _nvidia_driver() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
        return out.splitlines()[0].strip() if out.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def describe_system(device_type: str, world_size: int, num_nodes: int) -> dict:
    """Host, accelerator and software of this machine, with MLPerf's field names."""
    import torch

    cuda = device_type == "cuda"
    props = torch.cuda.get_device_properties(0) if cuda else None
    return {
        "number_of_nodes": num_nodes,
        "host_processor_model_name": _cpu_model(),
        "host_processor_core_count": os.cpu_count(),
        "host_memory_capacity": f"{_memory_gib()} GiB",
        "accelerators_per_node": (world_size // num_nodes) if cuda else 0,
        "accelerator_model_name": props.name if cuda else "none (CPU)",
        "accelerator_memory_capacity": f"{props.total_memory / 2**30:.1f} GiB" if cuda else "n/a",
        "accelerator_driver_version": _nvidia_driver() if cuda else "n/a",
        "cuda_version": torch.version.cuda or "n/a",
        "cudnn_version": str(torch.backends.cudnn.version()) if cuda else "n/a",
        "processes": world_size,
        "device_type": device_type,
        "operating_system": platform.platform(),
        "python_version": platform.python_version(),
        "framework": f"PyTorch {torch.__version__}",
        "torchvision_version": _version("torchvision"),
        "pytorchvideo_version": _version("pytorchvideo"),
        "av_version": _version("av"),
        "vmb_version": vmb.__version__,
    }
