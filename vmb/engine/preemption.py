"""Preemption: a scheduler's stop signal ends the timed loop cleanly, at a step boundary, leaving OUTPUT_DIR
resumable (GETTING_STARTED.md, Preemption and a full disk).

The contract:

- `PREEMPTION_SIGNALS` (SIGTERM: Slurm at preemption or the time limit, Kubernetes, torchrun passing it on;
  SIGUSR2: submitit's preemption and timeout warning) are caught from the first step of the timed loop to the
  end of the run (`preemptible`): the handler only records the signal, so nothing is cut mid-write. Before the
  loop they keep their default action: a kill there is resumable as any kill is.
- The loop asks `StopSignal.stop_now` at each step boundary. All processes must stop after the same step (one
  that went on would wait for the others in its next all-reduce). One process stops at the next step. Several
  decide together, with an all-reduce of the flag, only where the loop synchronises the host already: at the
  end of each logging window (LOG_PERIOD steps, and before each evaluation) right after the window's loss is
  read, and at the end of each epoch, right after the epoch's all-reduce. An all-reduce at every step would
  add a host sync per step on CUDA; a window is at most LOG_PERIOD steps late, seconds on a GPU.
- A stop inside an epoch loses the steps since the last checkpoint: the rerun resumes from it, as after a kill
  (a checkpoint holds whole epochs: a mid-epoch one could not resume exactly). A stop at the end of an epoch
  writes that epoch's checkpoint, logged as usual (vmb_checkpoint), even when TRAIN.CHECKPOINT_PERIOD would
  skip it, if it fits the grace (`checkpoint_fits`).
- Data-loader workers: SLURM signals every process of the job step (torchrun, its workers' process groups), and
  torch's own handler in a worker ends it; torch then raises that in the training process wherever it is.
  `preemptible` takes such an error, after a signal, for the preemption: that stop is neither at a step boundary
  nor agreed between processes, but the folder is as resumable as after a kill.
- The clock never pauses: the rerun keeps the first run_start, so the time to target includes the downtime.
- The process prints one line on stderr (`StopSignal.raise_preempted`) and exits with PREEMPTED_EXIT (143 = 128 +
  SIGTERM, what a shell reports for a process SIGTERM killed, whichever signal it was; vmb.cli.run_net), so that
  a scheduler sees a preempted job, not a failed one, and requeues it with the same command.
"""
from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import torch

from vmb.engine import distributed
from vmb.launch import PREEMPTION_SIGNALS

PREEMPTED_EXIT = 128 + signal.SIGTERM
# A checkpoint is written on a stop when its last write in this run took at most this long (or none was written
# yet): a third of Slurm's default KillWait (30 s between SIGTERM and SIGKILL), leaving the rest to the evaluation
# or logging window that may still be running when the signal comes. A write cut by the SIGKILL is harmless:
# the previous checkpoint stays, and the next start removes the temporary file.
CHECKPOINT_GRACE_S = 10.0


class Preempted(Exception):
    """The run stopped on a preemption signal and can be resumed; the message is the line it printed."""


class StopSignal:
    """The preemption signal this process received (`received`), recorded by its handler."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None

    def _handler(self, signum: int, frame) -> None:
        self.received = self.received or signal.Signals(signum)

    @contextmanager
    def caught(self) -> Iterator[StopSignal]:
        """Record PREEMPTION_SIGNALS instead of dying of them, within the block (main thread only)."""
        previous = {signum: signal.signal(signum, self._handler) for signum in PREEMPTION_SIGNALS}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def stop_now(self, ctx: distributed.Context, synced: bool) -> bool:
        """At a step boundary: True when every process stops here. `synced`: the loop has just synchronised
        the host (end of a logging window), the only points where several processes decide (module docstring)."""
        if ctx.world_size == 1:
            return self.received is not None
        if not synced:
            return False
        flags = distributed.all_reduce_sum(torch.tensor([int(self.received is not None)], device=ctx.device))
        return bool(flags.item())

    def line(self, where: str, out_dir: Path, saved_epoch: int | None) -> str:
        """The line a stop at `where` shows; `saved_epoch`: the epoch of the checkpoint a rerun resumes from (0:
        none, None: not known here)."""
        name = self.received.name if self.received else "signal to another process"
        since = ("its last checkpoint" if saved_epoch is None else f"its checkpoint of epoch {saved_epoch}"
                 if saved_epoch else "the start (no checkpoint yet)")
        return (f"preempted ({name}) at {where}: OUTPUT_DIR {out_dir} is resumable from {since}, its clock still "
                f"running; rerun the same command (exit status {PREEMPTED_EXIT})")

    def raise_preempted(self, line: str) -> NoReturn:
        """Print `line` (inside `caught`: a second signal cannot cut it) and raise Preempted."""
        print(line, file=sys.stderr)
        raise Preempted(line)


@contextmanager
def preemptible(out_dir: Path) -> Iterator[StopSignal]:
    """The block of the timed run in OUTPUT_DIR `out_dir`: PREEMPTION_SIGNALS are caught (`StopSignal.caught`).

    An exception that ends the block after a signal came is taken for the preemption: a scheduler's signal also
    reaches the data-loader workers, which die of it (torch's own handler in them), and torch then raises that
    in the loop wherever it is; the folder is as resumable as after a kill.
    """
    stop = StopSignal()
    with stop.caught():
        try:
            yield stop
        except Exception as exc:
            if stop.received is None or isinstance(exc, Preempted):
                raise
            stop.raise_preempted(stop.line("a step whose data-loader workers it ended", out_dir, None))


def checkpoint_fits(last_write_s: float | None) -> bool:
    """Whether a stop writes a checkpoint that TRAIN.CHECKPOINT_PERIOD skips: the last write, which took
    `last_write_s` (None: none yet in this run), fits in CHECKPOINT_GRACE_S."""
    return last_write_s is None or last_write_s <= CHECKPOINT_GRACE_S
