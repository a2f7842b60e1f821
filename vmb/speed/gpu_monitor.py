"""What a GPU does while a loop runs: how often the host waits for it, and how busy NVML says it is.

- `count_host_syncs(device)`: a context manager that counts the synchronising CUDA calls its own thread makes
  inside it (a device-decoding thread's are counted apart), with
  torch's sync debug mode ("warn": torch emits a `UserWarning` "called a synchronizing CUDA operation ..." from
  c10/cuda for every call that makes the host wait for the device, e.g. `.item()`, a blocking copy, a
  `torch.cuda.synchronize`). torch documents the mode as experimental: not every synchronising operation warns
  (torch.distributed's and torch.sparse's are not covered), so the count is a lower bound.
- `UtilizationSampler(device)`: a background thread reading NVML's utilisation of the device's GPU (the share
  of the last sample period in which a kernel ran) every ~100 ms; `stop()` returns the mean.

Both measure nothing off CUDA (a count of 0, a mean of None), and neither raises where NVML or the debug mode
is missing: a figure that cannot be measured is None, never a made-up 0.
"""
from __future__ import annotations

import threading
import warnings
from types import TracebackType

import torch

from vmb.record.energy import nvml_handle

SYNC_WARNING = "called a synchronizing CUDA operation"  # the start of torch's warning (c10/cuda/CUDAFunctions)
SAMPLE_PERIOD_S = 0.1


class HostSyncCounter:
    """Counts the host synchronisations of the CUDA calls made inside its `with` block by the thread that entered
    it (see `count_host_syncs`).

    On a CUDA device: sets `torch.cuda.set_sync_debug_mode("warn")` on entry and restores the previous mode on
    exit; every sync warning the entering thread triggers inside counts (the filter is "always", so a call site
    that syncs in a loop counts every time), `count` is readable inside the block and after it. Sync warnings of
    other threads (a device-decoding thread's, which make only that thread wait) are counted apart in
    `other_threads`. Other warnings go on to the previous handler, so the block hides nothing but sync warnings.
    Not reentrant (the warnings machinery is process-wide): use it around one loop at a time.

    On any other device: a no-op, the counts stay 0.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = torch.device(device).type == "cuda"
        self.count = 0
        self.other_threads = 0
        self._catcher: warnings.catch_warnings | None = None
        self._previous_mode = 0

    def __enter__(self) -> HostSyncCounter:
        if self.cuda:
            owner, show = threading.get_ident(), warnings.showwarning
            self._catcher = warnings.catch_warnings()
            self._catcher.__enter__()
            warnings.simplefilter("always")

            def record(message, category, filename, lineno, file=None, line=None) -> None:
                if issubclass(category, UserWarning) and str(message).startswith(SYNC_WARNING):
                    if threading.get_ident() == owner:
                        self.count += 1
                    else:
                        self.other_threads += 1
                else:
                    show(message, category, filename, lineno, file, line)

            warnings.showwarning = record
            self._previous_mode = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode("warn")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self.cuda:
            torch.cuda.set_sync_debug_mode(self._previous_mode)
            self._catcher.__exit__(exc_type, exc, traceback)


def count_host_syncs(device: torch.device | str | None = None) -> HostSyncCounter:
    """`with count_host_syncs(device) as syncs: ...; syncs.count`: the synchronising CUDA calls made in the block
    (0 off CUDA). `device` None: CUDA when torch sees a GPU, else the CPU. See HostSyncCounter."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return HostSyncCounter(torch.device(device))


class UtilizationSampler:
    """NVML GPU utilisation of `device`'s GPU, sampled every `period_s` by a daemon thread between `start()` and
    `stop()`. `stop()` returns the mean percent of the samples, or None where it was not measured: a device that
    is not CUDA, NVML or nvidia-ml-py missing, a GPU NVML cannot find, no sample read, or NVML stopped answering
    part of the way (a mean of part of the interval would pass for the whole). `unavailable` says why (None while
    measuring works)."""

    def __init__(self, device: torch.device, period_s: float = SAMPLE_PERIOD_S) -> None:
        self.period_s = period_s
        self.samples: list[float] = []
        self.unavailable: str | None = None
        self._nvml, self._handle = None, None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        device = torch.device(device)
        if device.type != "cuda":
            self.unavailable = "not measured: not a CUDA device"
            return
        try:
            self._nvml, self._handle = nvml_handle(device)
        except Exception as exc:  # ImportError, NVMLError (no library, no such device): not measured
            self.unavailable = f"not measured: NVML unavailable ({type(exc).__name__})"

    def _read(self) -> None:
        try:
            self.samples.append(float(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu))
        except Exception as exc:  # the driver stopped answering: the interval is no longer covered
            self.unavailable = f"not measured: NVML stopped answering ({type(exc).__name__})"
            self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._read()
            self._stop.wait(self.period_s)

    def start(self) -> None:
        """Start sampling (a no-op where nothing can be measured)."""
        if self._handle is None:
            return
        self.samples, self._stop = [], threading.Event()
        self._thread = threading.Thread(target=self._loop, name="vmb-gpu-utilization", daemon=True)
        self._thread.start()

    def stop(self) -> float | None:
        """Stop sampling; the mean utilisation in percent over the samples, or None (see the class)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        if self.unavailable or not self.samples:
            return None
        return sum(self.samples) / len(self.samples)
