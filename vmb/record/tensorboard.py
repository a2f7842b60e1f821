"""TensorBoard curves of a run (OUTPUT_DIR/tensorboard, written by rank 0), which the timed result never
depends on.

A full or failing disk (vmb.files.io_failure) turns them off for the rest of the run with one warning line
naming the folder, the reason and the free space, and the run goes on: stopping a timed run for its curves
would make the result depend on them, and the writes a rerun needs (checkpoint, run log, result.json) stop the
run with one line of their own when they fail.

torch's SummaryWriter writes in a background thread. A failed write ends that thread (Python would print its
traceback: silenced here for TensorBoard's own threads and I/O failures only) and is raised in the main thread
by the next `add_scalar`, or by `close`, which flushes first: that is where the warning comes from.
"""
from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from vmb.files import free_space, io_failure


class TensorBoard:
    """A SummaryWriter for `log_dir` that an I/O failure turns off (module docstring)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._writer: SummaryWriter | None = None
        self._thread_hook = threading.excepthook
        threading.excepthook = self._quiet_writer_thread
        try:
            with self._turned_off_by_io_failure():
                self._writer = SummaryWriter(str(log_dir))  # writes its first event, and waits for it
        except BaseException:
            threading.excepthook = self._thread_hook
            raise

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        if self._writer is not None:
            with self._turned_off_by_io_failure():
                self._writer.add_scalar(tag, value, step)

    def close(self) -> None:
        try:
            if self._writer is not None:
                with self._turned_off_by_io_failure():
                    self._writer.flush()  # raises the thread's failure, which close() would drop
            if self._writer is not None:
                self._writer.close()
        finally:
            threading.excepthook = self._thread_hook

    @contextmanager
    def _turned_off_by_io_failure(self) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            failure = io_failure(exc)
            if failure is None:
                raise
            writer, self._writer = self._writer, None
            if writer is not None:
                with suppress(OSError):
                    writer.close()
            tqdm.write(f"warning: cannot write TensorBoard events to {self.log_dir}: {failure.strerror} "
                       f"({free_space(self.log_dir)} free on its filesystem); TensorBoard is off for the rest of "
                       "this run, which goes on (its result does not depend on it)", file=sys.stderr)

    def _quiet_writer_thread(self, args: threading.ExceptHookArgs) -> None:
        """threading.excepthook while this writer is open: a TensorBoard thread's I/O failure is left to the
        warning above; everything else goes to the previous hook."""
        if not (type(args.thread).__module__.startswith("tensorboard.") and io_failure(args.exc_value)):
            self._thread_hook(args)
