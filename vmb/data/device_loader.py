"""Batches decoded on the GPU one batch ahead of the training loop, for the on-device DATA.DECODING_BACKENDs.

A background thread of the training process takes the sampler's keys a batch at a time and has the dataset
decode the whole batch on this process's own GPU (`KineticsDataset.load_batch`: torchcodec's NVDEC clip by clip,
or one DALI pipeline run per batch), while the training loop trains on the batch before: decoding batch k + 1
overlaps training on batch k, through a queue `depth` batches deep. Frames never leave the device.

CUDA: the thread decodes on a stream of its own and copies the labels there too (from pinned memory). The loop's
stream waits for each batch's event (no host sync), and the batch's clips and labels are recorded as in use by the
loop's stream, so that the caching allocator does not give their memory to the next batch while training still
reads it. CUDA contexts are per process, so this thread (unlike a
forked data-loader worker) can use the GPU.

Order: the sampler's keys cut into batches of `batch_size` (the last one shorter unless `drop_last`), as a
DataLoader over the same dataset and sampler batches them; the dataset gives each key the sample that one clip
at a time would give it, so resume, the seeded per-sample draws and exact validation counting are those of the
host path. An error in the thread (a DataError of the data, a failing GPU) is raised in the training loop.
"""
from __future__ import annotations

import queue
import threading
from contextlib import ExitStack
from typing import Iterator

import torch
from torch.utils.data import Sampler

from vmb.data.kinetics import KineticsDataset

# clips (N, C, T, H, W) uint8 and labels (N,) on the device; failed decodes (N,) and augment (N, P) on the host
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class DeviceBatches:
    """Iterable over the batches of `sampler`'s keys, decoded on `device` (module docstring); `sampler` and
    `dataset` are exposed as a DataLoader exposes them."""

    def __init__(self, dataset: KineticsDataset, sampler: Sampler, batch_size: int, drop_last: bool,
                 device: torch.device, depth: int = 2) -> None:
        self.dataset, self.sampler, self.batch_size, self.drop_last = dataset, sampler, batch_size, drop_last
        self.device, self.depth = device, depth

    def __len__(self) -> int:
        whole, rest = divmod(len(self.sampler), self.batch_size)
        return whole + (1 if rest and not self.drop_last else 0)

    def _chunks(self) -> list[list[tuple[int, int]]]:
        keys = list(self.sampler)
        chunks = [keys[i:i + self.batch_size] for i in range(0, len(keys), self.batch_size)]
        return chunks[:len(self)]

    def __iter__(self) -> Iterator[Batch]:
        chunks = self._chunks()
        handoff: queue.Queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()
        cuda = self.device.type == "cuda"
        side_stream = torch.cuda.Stream(self.device) if cuda else None
        thread = threading.Thread(target=self._produce, args=(chunks, handoff, stop, side_stream), daemon=True,
                                  name="vmb-device-decode")
        thread.start()
        try:
            for _ in chunks:
                item = handoff.get()
                if isinstance(item, BaseException):
                    raise item
                batch, ready = item
                if cuda:
                    stream = torch.cuda.current_stream(self.device)
                    stream.wait_event(ready)  # on the device: the host does not wait
                    for tensor in batch[:2]:  # clips and labels, on the device
                        tensor.record_stream(stream)
                yield batch
        finally:
            stop.set()
            while thread.is_alive():  # unblock a producer waiting to put, then let it see `stop`
                try:
                    handoff.get_nowait()
                except queue.Empty:
                    thread.join(timeout=0.05)

    def _produce(self, chunks: list, handoff: queue.Queue, stop: threading.Event,
                 side_stream: torch.cuda.Stream | None) -> None:
        """The thread: decode each chunk and hand it over with the event that marks it ready, or the error."""

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    handoff.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            with ExitStack() as context:
                if side_stream is not None:
                    context.enter_context(torch.cuda.device(self.device))  # the current device is per thread
                    context.enter_context(torch.cuda.stream(side_stream))
                for chunk in chunks:
                    if stop.is_set():
                        return
                    batch = self.dataset.load_batch(chunk)
                    ready = None
                    if side_stream is not None:
                        clips, labels, failures, augment = batch
                        # The labels too, from pinned memory: a copy from pageable memory would make CUDA wait for
                        # the loop's stream first, a host sync in every step.
                        batch = clips, labels.pin_memory().to(self.device, non_blocking=True), failures, augment
                        ready = torch.cuda.Event()
                        ready.record(side_stream)
                    if not put((batch, ready)):
                        return
        except BaseException as exc:  # noqa: BLE001 - every error is the training loop's to raise
            put(exc)
