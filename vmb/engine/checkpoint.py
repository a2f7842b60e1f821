"""Checkpoints: written atomically (temp file + rename), loaded with `weights_only=True`."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from vmb.errors import VMBError

CHECKPOINT_NAME = "checkpoint.pyth"


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `state` (tensors, numbers, strings, lists and dicts only) to `path` atomically."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict | None:
    """The state saved at `path`, or None if there is none. Never unpickles arbitrary objects."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise VMBError(f"{path}: cannot load checkpoint ({type(exc).__name__}); delete it to start over") from None
