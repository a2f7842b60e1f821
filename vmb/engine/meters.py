"""What the training loop measures about itself, on the host only (no device sync): how long it waits for
its next batch (`DataWait`, `timed_batches`), whether the run is input-bound (`StallWatch`), and each logging
window's loss, speed and data wait (`Window`)."""
from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator

import torch
from fvcore.common.config import CfgNode

from vmb.data.loader import usable_cores
from vmb.launch import processes_sharing_cores

# Above this share of the loop's time spent waiting for data the run is input-bound: the devices idle for a
# tenth of training or more, four times MLPerf's run-to-run spread (+-2.5 %) and far above timer noise, so
# the input should be fixed before the result says anything about the accelerators.
DATA_WAIT_WARN = 0.10


class DataWait:
    """Host seconds the training loop spent blocked on its next batch (`wait_s`), and its wall seconds less
    `excluded_s` (evaluations), since the last `restart()`."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.start, self.wait_s, self.excluded_s = time.perf_counter(), 0.0, 0.0

    def loop_s(self) -> float:
        return time.perf_counter() - self.start - self.excluded_s


def timed_batches(loader: Iterable, clocks: tuple[DataWait, ...]) -> Iterator:
    """The loader's batches; the time spent waiting for each is added to every clock in `clocks`.

    Host time (time.perf_counter) only, no device sync. On CUDA this is still the stall: the loop queues a
    step's kernels and copies asynchronously and comes straight back for the next batch, so it blocks here
    only while the loader has no batch ready. As the devices' idle time for want of data it is high by at
    most the work still queued on the device when the wait begins (under one step), never low.
    """
    batches = iter(loader)
    while True:
        start = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            return
        waited = time.perf_counter() - start
        for clock in clocks:
            clock.wait_s += waited
        yield batch


class StallWatch:
    """Decides, once per process, that the run is input-bound: the logging windows that begin after the
    warm-up waited for data more than DATA_WAIT_WARN of their time, all together.

    The warm-up is the first `warmup_steps` steps of the first epoch this process runs: the workers start
    then, and each one's first batch costs a whole batch of decoding however fast the loader is afterwards.
    """

    def __init__(self, warmup_steps: int) -> None:
        self.warmup_steps, self.wait_s, self.loop_s, self.warned = warmup_steps, 0.0, 0.0, False

    def input_bound(self, first_step: int, wait_s: float, loop_s: float) -> bool:
        """Add a window that began at this process's step `first_step` (1-based); True the first time only."""
        if first_step <= self.warmup_steps:
            return False
        self.wait_s, self.loop_s = self.wait_s + wait_s, self.loop_s + loop_s
        if self.warned or self.wait_s <= DATA_WAIT_WARN * self.loop_s:
            return False
        self.warned = True
        return True


def input_bound_message(fraction: float, workers: int, cores: int, backend: str) -> str:
    """The one warning an input-bound run gets: what was measured and which keys to change (`cores`: usable
    cores per training process, so that the reader sees whether more workers can help)."""
    return (f"warning: input-bound: the training loop waited for data {fraction:.0%} of the time after warm-up "
            f"(above {DATA_WAIT_WARN:.0%}), so the devices idled; raise DATA_LOADER.NUM_WORKERS (now {workers}, "
            f"with {cores} core(s) per training process), try another DATA.DECODING_BACKEND (now {backend}) or "
            "use prepared data (tools/prepare_kinetics20.py); see docs/DATA.md")




class Window:
    """One logging window of the training loop: the summed loss (on the device) and its clock."""

    def __init__(self, device: torch.device, batch_size: int, stall: StallWatch, main: bool) -> None:
        self.loss_sum, self.batch_size, self.stall, self.main = torch.zeros((), device=device), batch_size, stall, main
        self.clock, self.steps, self.first_step, self.steps_run = DataWait(), 0, 1, 0

    def add(self, loss: torch.Tensor) -> None:
        self.loss_sum += loss
        self.steps += 1
        self.steps_run += 1

    def report(self, done: int, optimizer, bar, writer, cfg: CfgNode, workers: int) -> tuple[float, int]:
        """Show and record the window's loss, speed and data wait; warn once if input-bound; start a new window.
        Returns the window's (loop seconds, clips trained)."""
        loss = self.loss_sum.item() / self.steps  # the one host sync, once per window
        seconds = self.clock.loop_s()
        clips_per_s = self.steps * self.batch_size / seconds
        wait_fraction = self.clock.wait_s / seconds
        bar.set_postfix(loss=f"{loss:.3f}", clips_s=f"{clips_per_s:.1f}", data_wait=f"{wait_fraction:.0%}")
        if writer:
            writer.add_scalar("train/loss", loss, done)
            writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], done)
            writer.add_scalar("train/clips_per_s", clips_per_s, done)
            writer.add_scalar("train/data_wait_fraction", wait_fraction, done)
        if self.stall.input_bound(self.first_step, self.clock.wait_s, seconds) and self.main:
            cores = usable_cores()
            cores //= processes_sharing_cores(cores)
            bar.write(input_bound_message(self.stall.wait_s / self.stall.loop_s, workers, cores,
                                          cfg.DATA.DECODING_BACKEND), file=sys.stderr)
        clips = self.steps * self.batch_size
        self.loss_sum.zero_()
        self.clock.restart()
        self.steps, self.first_step = 0, self.steps_run + 1
        return seconds, clips
