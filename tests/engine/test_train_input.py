"""The trainer's input side without training: the data-wait clocks, the input-bound decision, and the
resolved worker count reaching the CPU thread policy."""
from __future__ import annotations

import time

import pytest
import torch

from vmb.config import load_config
from vmb.data.loader import num_workers_here
from vmb.engine import meters, train
from vmb.engine.distributed import Context


class SlowLoader:
    """Yields `items`, sleeping `delay` seconds before each (a loader that is behind)."""

    def __init__(self, items, delay: float) -> None:
        self.items, self.delay = items, delay

    def __iter__(self):
        for item in self.items:
            time.sleep(self.delay)
            yield item


def test_only_the_wait_for_a_batch_is_counted():
    epoch, window = meters.DataWait(), meters.DataWait()
    seen = []
    for batch in meters.timed_batches(SlowLoader([1, 2, 3], delay=0.05), (epoch, window)):
        seen.append(batch)
        time.sleep(0.1)  # the step itself: not waiting for data
    assert seen == [1, 2, 3]
    for clock in (epoch, window):
        assert 0.15 <= clock.wait_s < 0.3
        assert clock.loop_s() >= 0.45


def test_excluded_time_leaves_the_loop_time():
    clock = meters.DataWait()
    time.sleep(0.1)
    clock.excluded_s = 0.1
    assert 0.0 <= clock.loop_s() < 0.1
    clock.restart()
    assert clock.wait_s == clock.excluded_s == 0.0 and clock.loop_s() < 0.1


def test_warm_up_windows_never_warn():
    watch = meters.StallWatch(warmup_steps=3)
    assert not watch.input_bound(first_step=1, wait_s=9.0, loop_s=10.0)  # workers starting: ignored
    assert not watch.input_bound(first_step=3, wait_s=9.0, loop_s=10.0)
    assert (watch.wait_s, watch.loop_s) == (0.0, 0.0)


def test_warns_once_when_the_steady_wait_exceeds_a_tenth():
    watch = meters.StallWatch(warmup_steps=1)
    assert not watch.input_bound(first_step=2, wait_s=1.0, loop_s=10.0)  # exactly 10 %: not above
    assert not watch.input_bound(first_step=12, wait_s=0.0, loop_s=10.0)  # 5 % so far
    assert watch.input_bound(first_step=22, wait_s=5.0, loop_s=10.0)  # 20 % so far
    assert watch.wait_s / watch.loop_s == pytest.approx(0.2)
    assert not watch.input_bound(first_step=32, wait_s=10.0, loop_s=10.0)  # said once


def test_warning_names_the_keys_to_change():
    message = meters.input_bound_message(0.37, 3, 4, "pyav")
    assert message.startswith("warning: input-bound") and "\n" not in message
    for needle in ("37%", "DATA_LOADER.NUM_WORKERS (now 3, with 4 core(s) per training process)",
                   "DATA.DECODING_BACKEND (now pyav)", "prepared data", "docs/DATA.md"):
        assert needle in message


def test_epoch_totals_of_one_process():
    ctx = Context(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    assert train._reduce_epoch(3, 1.25, ctx) == (3, 1.25)


class Stop(Exception):
    pass


def test_thread_policy_gets_the_resolved_worker_count(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    calls = []

    def fake_setup(num_gpus, num_workers=0):
        calls.append(num_workers)
        raise Stop

    monkeypatch.setattr(train.distributed, "setup", fake_setup)
    with pytest.raises(Stop):
        train.run(load_config(None, ["NUM_GPUS", "0", "DATA_LOADER.NUM_WORKERS", "auto"]))
    assert calls == [num_workers_here("auto", "pyav")] and isinstance(calls[0], int)
