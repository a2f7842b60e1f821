"""Out-of-memory errors as the speed tools see them: reported for the measurement that hit one, not raised."""
from __future__ import annotations

import torch


def is_oom(exc: BaseException) -> bool:
    """Whether `exc` is an out-of-memory error: CUDA's OutOfMemoryError, MemoryError, or the CPU allocator's
    RuntimeError ("out of memory", "can't allocate memory")."""
    text = str(exc).lower()
    return isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text))
