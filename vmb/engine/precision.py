"""Precision and memory layout: the precision names the tools take, their autocast dtypes, what a device runs
natively, and the layout of the model and its input.

One rule for every tool (the trainer, test_net, bench_train, bench_infer): fp16 needs CUDA (autocast and, in
training, a GradScaler); bf16 runs on the CPU, and on a GPU only where the GPU computes it natively
(`torch.cuda.is_bf16_supported(including_emulation=False)`: Ampere and newer). A V100 or T4 answers
`torch.cuda.is_bf16_supported()` True through emulation, several times slower than fp16, and a benchmark must
not measure that without saying so: such a GPU is refused bf16 with one line.

On CUDA the model and every batch it sees are channels_last_3d (cuDNN's fast 3D convolutions take NDHWC); on
the CPU both stay in the default layout.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from fvcore.common.config import CfgNode

from vmb.config.defaults_run import AMP_DTYPES
from vmb.errors import ConfigError

# Precision name -> autocast dtype (None: no autocast, fp32; on CUDA with TF32, vmb.engine.numerics).
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def unsupported(precision: str, device: torch.device) -> str | None:
    """Why `device` cannot run `precision` natively, or None if it can."""
    if precision == "fp16" and device.type != "cuda":
        return "fp16 needs a CUDA device"
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        return (f"{torch.cuda.get_device_name(device)} has no native bfloat16 (torch would emulate it, several "
                "times slower); use fp16 or fp32")
    return None


def check_precision(precision: str, device: torch.device, what: str) -> None:
    """Raise a one-line ConfigError, naming `what` (the key or flag that asked), unless `device` runs `precision`."""
    why = unsupported(precision, device)
    if why is not None:
        raise ConfigError(f"{what}: {why}")


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """The autocast context of `precision` on `device` (a no-op context for fp32)."""
    dtype = PRECISIONS[precision]
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def training_precision(cfg: CfgNode, device: torch.device) -> str:
    """The precision a training run of `cfg` uses on `device`: TRAIN.AMP_DTYPE's when TRAIN.MIXED_PRECISION and on
    CUDA (AMP is a CUDA setting; the CPU trains fp32).

    Raises:
        ConfigError: the device cannot run it natively.
    """
    if not (cfg.TRAIN.MIXED_PRECISION and device.type == "cuda"):
        return "fp32"
    precision = AMP_DTYPES[cfg.TRAIN.AMP_DTYPE]
    check_precision(precision, device, f"TRAIN.AMP_DTYPE {cfg.TRAIN.AMP_DTYPE}")
    return precision


def memory_format(device: torch.device) -> torch.memory_format:
    """The layout of the model and its batches on `device`."""
    return torch.channels_last_3d if device.type == "cuda" else torch.contiguous_format
