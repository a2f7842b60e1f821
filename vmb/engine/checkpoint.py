"""The checkpoint, its whole lifecycle in one place: what it holds (`training_state`), writing it atomically
(`save_checkpoint`), the checks that let it continue a run (`resume_state`) and putting it back (`restore`), and
loading its weights for testing (`load_weights`). Files are written with a temporary name and renamed
(vmb.files.atomic_path: a failed write keeps the previous checkpoint and leaves no temporary file; a full or
failing disk is one line, vmb.files.WriteError), and loaded with `weights_only=True` (nothing is unpickled but
tensors, numbers, strings, lists and dicts).

A checkpoint holds: "model", "optimizer" and "scaler" state dicts, "epoch" (epochs done), "decode_failures" (so
far), "data_wait" ([wait s, loop s] per epoch), "run_start_ms" (binds it to its run log's run_start) and
"precision" ("fp32" or "amp_<dtype>": it continues a run only in that precision).
"""
from __future__ import annotations

from pathlib import Path

import torch

from vmb.engine.resume import Interrupted
from vmb.errors import VMBError
from vmb.files import atomic_path
from vmb.record.schema import CHECKPOINT_FILE, RUN_LOG


def training_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                   epoch: int, decode_failures: int, data_wait: list, run_start_ms: int, precision: str) -> dict:
    """The checkpoint of a run after `epoch` epochs (module docstring)."""
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "epoch": epoch, "decode_failures": decode_failures, "data_wait": data_wait,
            "run_start_ms": run_start_ms, "precision": precision}


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `state` (tensors, numbers, strings, lists and dicts only) to `path` atomically.

    Through a Python file object: torch.save reports a failed write to a path as a RuntimeError that does not say
    why, but keeps the file object's OSError (errno ENOSPC, ...) as its context, which `atomic_path` reads.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(state, handle)


def load_checkpoint(path: Path) -> dict | None:
    """The state saved at `path`, or None if there is none. Never unpickles arbitrary objects."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise VMBError(f"{path}: cannot load checkpoint ({type(exc).__name__}); delete it to start over") from None


def resume_state(path: Path, interrupted: Interrupted | None, precision: str) -> dict | None:
    """The checkpoint to resume from (None to start at epoch 0), checked against the run it must belong to.

    A checkpoint is used only with the run log holding its run_start (whose header binds the config and the
    code: `check_same_run`), and only in the same `precision` (the same config on another device trains in
    another one), else one line saying what to do.
    """
    state = load_checkpoint(path)
    if state is None:
        return None
    if interrupted is None:
        raise VMBError(f"{path} has no run log with its run_start ({RUN_LOG} is missing or its run never "
                       "started); delete the checkpoint or choose a new OUTPUT_DIR")
    if state.get("run_start_ms") != interrupted.run_start_ms:
        raise VMBError(f"{path} belongs to a run that started at {state.get('run_start_ms')} ms, but {RUN_LOG}'s "
                       f"run_start is {interrupted.run_start_ms} ms; delete the checkpoint or choose a new OUTPUT_DIR")
    if state.get("precision", "unknown") != precision:
        raise VMBError(f"{path} was written in precision {state.get('precision', 'unknown')}, this run is "
                       f"{precision}; resume on the same kind of device with the same TRAIN.MIXED_PRECISION / "
                       "TRAIN.AMP_DTYPE, or use a new OUTPUT_DIR")
    return state


def restore(state: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
            scaler: torch.amp.GradScaler) -> tuple[int, int, list]:
    """Put `state` (from `resume_state`) back into the model, optimizer and scaler; return (epochs done, decode
    failures so far, data wait per epoch)."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    return state["epoch"], state["decode_failures"], state["data_wait"]


def load_weights(model: torch.nn.Module, path: Path, arch: str, cfg_file: str) -> dict:
    """Load the checkpoint's "model" state dict into `model`; return the checkpoint. A missing, unreadable
    or foreign checkpoint, or one of another architecture or size, is a one-line VMBError naming both."""
    state = load_checkpoint(path)
    if state is None:
        raise VMBError(f"checkpoint {path} not found; pass a run's OUTPUT_DIR/{CHECKPOINT_FILE} with --checkpoint")
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise VMBError(f"checkpoint {path} holds no model weights ('model'); pass a {CHECKPOINT_FILE} that "
                       "tools/run_net.py wrote")
    weights, own = state["model"], model.state_dict()
    missing = [key for key in own if key not in weights]
    unexpected = [key for key in weights if key not in own]
    reshaped = [key for key in own if key in weights and getattr(weights[key], "shape", None) != own[key].shape]
    problems = ([f"missing {len(missing)} keys, e.g. {missing[0]!r}"] if missing else []) + \
               ([f"unexpected {len(unexpected)}, e.g. {unexpected[0]!r}"] if unexpected else []) + \
               ([(f"{len(reshaped)} of another shape, e.g. {reshaped[0]!r} {tuple(weights[reshaped[0]].shape)} "
                  f"vs {tuple(own[reshaped[0]].shape)}")] if reshaped else [])
    if problems:
        raise VMBError(f"checkpoint {path} does not fit MODEL.ARCH {arch} of {cfg_file} ({'; '.join(problems)}): "
                       "was it written by another architecture or model size? use its config")
    model.load_state_dict(weights)
    return state
