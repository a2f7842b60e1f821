"""The numerics policy of a training process, set in one place and logged with the run (vmb.record.schema.NUMERICS).

On CUDA: cuDNN autotuning on (`cudnn.benchmark`: the clip shapes are fixed, so each convolution is tuned
once), non-deterministic kernels allowed, and TF32 for fp32 matmuls and cuDNN convolutions, as MLPerf
Training permits. TF32 is set through the CUDA-specific legacy flags (`torch.backends.cuda.matmul.allow_tf32`,
`torch.backends.cudnn.allow_tf32`): torch 2.14 keeps both APIs in step from those, so the new getters
(`fp32_precision`) read "tf32" and the legacy ones (`allow_tf32`, `torch.get_float32_matmul_precision`, which
TunableOp and the profiler read) keep working. Setting only the new API makes every legacy getter raise
afterwards; `torch.set_float32_matmul_precision` would also switch the CPU's oneDNN matmuls to TF32. On the
CPU nothing is set: fp32 stays IEEE and cuDNN is not used.
"""
from __future__ import annotations

import torch



def set_numerics(device: torch.device) -> dict[str, bool]:
    """Apply the policy for `device`; return what is in effect on it, one flat entry per setting (the same
    keys on every device, so that every run log has them)."""
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.deterministic = False
        torch.backends.cuda.matmul.allow_tf32 = True  # both APIs in step (module docstring)
        torch.backends.cudnn.allow_tf32 = True
    return {
        "cudnn_benchmark": cuda and torch.backends.cudnn.benchmark,
        "cudnn_deterministic": cuda and torch.backends.cudnn.deterministic,
        "tf32_matmul": cuda and torch.backends.cuda.matmul.fp32_precision == "tf32",
        "tf32_conv": cuda and torch.backends.cudnn.conv.fp32_precision == "tf32",
    }
