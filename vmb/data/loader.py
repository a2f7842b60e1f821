"""Data loaders: per-process shards of the global batch, and an exact (unpadded) validation split."""
from __future__ import annotations

import multiprocessing
import os
import signal
from typing import Iterator, Union

import torch
from torch.utils.data import DataLoader, Sampler

from vmb.data.device_loader import DeviceBatches
from vmb.data.kinetics import ClipSpec, KineticsDataset
from vmb.backends import BACKENDS
from vmb.errors import ConfigError
from vmb.launch import PREEMPTION_SIGNALS, processes_sharing_cores

# How DataLoader workers start (build_loader): fork, where the platform has it.
WORKER_START = "fork" if "fork" in multiprocessing.get_all_start_methods() else None


class TrainSampler(Sampler):
    """Shuffled (epoch, index) keys for one process.

    The permutation depends only on (seed, epoch); process `rank` takes every `world_size`-th entry, so the
    union of all processes' i-th batches is the same global batch for any process count. The tail that
    does not fill a global batch is dropped.
    """

    def __init__(self, num_samples: int, global_batch: int, rank: int, world_size: int, seed: int) -> None:
        self.num_samples, self.global_batch = num_samples, global_batch
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.epoch = 0
        if num_samples < global_batch:
            raise ConfigError(f"TRAIN.BATCH_SIZE {global_batch} exceeds the {num_samples} training videos")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return (self.num_samples // self.global_batch) * self.global_batch // self.world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.num_samples, generator=generator)
        used = (self.num_samples // self.global_batch) * self.global_batch
        for index in order[:used][self.rank::self.world_size].tolist():
            yield self.epoch, index


class ShardSampler(Sampler):
    """Validation keys for one process: indices rank, rank + world_size, ... with no padding, so summing
    the per-process counts counts every video exactly once."""

    def __init__(self, num_samples: int, rank: int, world_size: int) -> None:
        self.indices = range(rank, num_samples, world_size)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self.indices:
            yield 0, index


def per_process_batch(global_batch: int, world_size: int, key: str) -> int:
    """The share of a global batch each process takes; the split must be exact."""
    if global_batch % world_size:
        raise ConfigError(f"{key} {global_batch} is not divisible by the {world_size} processes")
    return global_batch // world_size


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity where the OS has one, else every core."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def resolve_num_workers(setting: int | str, cores: int, processes: int) -> int:
    """DATA_LOADER.NUM_WORKERS as a number of decoding processes for one training process.

    An integer is taken as is. "auto" gives each of the `processes` training processes its share of the
    `cores` minus the one its own training loop needs: at least 1 worker when the share is 2 cores or more,
    0 (decode in the training loop) when it is a single core.
    """
    if setting != "auto":
        return int(setting)
    return max(0, cores // max(1, processes) - 1)


def num_workers_here(setting: int | str, backend: str) -> int:
    """DATA_LOADER.NUM_WORKERS resolved for this process on this machine and DATA.DECODING_BACKEND `backend`: an
    on-device backend decodes in the training process, with no workers."""
    if BACKENDS[backend].on_device:
        return 0
    cores = usable_cores()
    # Not the plain local process count: an srun task bound to its own CPUs shares them with no one.
    return resolve_num_workers(setting, cores, processes_sharing_cores(cores))


def build_loader(dataset: KineticsDataset, sampler: Sampler, batch_size: int, num_workers: int,
                 pin_memory: bool, prefetch_factor: int, drop_last: bool) -> DataLoader:
    """A DataLoader with persistent workers (validation runs many times per run), started by fork.

    Fork, whatever the platform's default (Python 3.14 makes it forkserver on Linux): a forked worker inherits the
    dataset as built, and one that touched CUDA fails at once (torch marks it a bad fork), where a worker started
    afresh would silently open a CUDA context on GPU 0 of its own. Workers decode on the host only
    (vmb.data.video: on-device backends never run in workers)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=drop_last,
        persistent_workers=num_workers > 0,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        multiprocessing_context=WORKER_START if num_workers > 0 else None,
        worker_init_fn=_ignore_preemption if num_workers > 0 else None,
    )


def _ignore_preemption(worker_id: int) -> None:
    """A worker ignores the preemption signals (a scheduler signals every process of the job): the training
    process catches them and stops its workers itself, at an agreed step (vmb.engine.preemption)."""
    for signum in PREEMPTION_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


class CachedValLoader:
    """Validation batches decoded once, then replayed from memory.

    Validation clips are deterministic (centre clip, centre crop), so every evaluation after the first
    sees exactly the tensors a fresh decode would give: caching changes the cost of an evaluation, never
    its result. The cache is kept only after a complete pass; the decoding loader (and its workers) is
    then released. Memory: the whole validation split as uint8 clips, shared by no other process.
    """

    def __init__(self, loader: DataLoader) -> None:
        self.dataset = loader.dataset
        self._loader: DataLoader | None = loader
        self._batches: list | None = None

    def __len__(self) -> int:
        return len(self._batches) if self._batches is not None else len(self._loader)

    def __iter__(self) -> Iterator:
        if self._batches is not None:
            yield from self._batches
            return
        batches = []
        for batch in self._loader:
            batches.append(batch)
            yield batch
        self._batches, self._loader = batches, None


TrainLoader = Union[DataLoader, DeviceBatches]
ValLoader = Union[DataLoader, DeviceBatches, CachedValLoader]


def clip_spec_from_cfg(cfg) -> ClipSpec:
    """The ClipSpec the config describes (DATA.* and AUG.*)."""
    d = cfg.DATA
    return ClipSpec(
        num_frames=d.NUM_FRAMES,
        sampling_rate=d.SAMPLING_RATE,
        target_fps=d.TARGET_FPS,
        train_jitter_scales=tuple(d.TRAIN_JITTER_SCALES),
        train_crop_size=d.TRAIN_CROP_SIZE,
        test_crop_size=d.TEST_CROP_SIZE,
        rrc_scale=tuple(d.TRAIN_JITTER_SCALES_RELATIVE),
        rrc_ratio=tuple(d.TRAIN_JITTER_ASPECT_RELATIVE),
        random_flip=d.RANDOM_FLIP,
        rand_augment=(cfg.AUG.RAND_NUM_OPS, cfg.AUG.RAND_MAGNITUDE, cfg.AUG.RAND_MAGNITUDE_STD)
        if cfg.AUG.ENABLE else None,
        erase_prob=cfg.AUG.RE_PROB if cfg.AUG.ENABLE else 0.0,
        backend=d.DECODING_BACKEND,
    )


def build_loaders(cfg, rank: int, world_size: int, device: torch.device,
                  workers: int | None = None) -> tuple[TrainLoader, ValLoader]:
    """(train loader, val loader) for this process, training on `device`.

    A host DATA.DECODING_BACKEND decodes in `workers` data-loader processes (None: DATA_LOADER.NUM_WORKERS resolved
    by `num_workers_here`), its pages pinned on CUDA if DATA_LOADER.PIN_MEMORY; an on-device one decodes on
    `device` one batch ahead in a thread (vmb.data.device_loader; vmb.data.video.check_decoding_device refuses it
    on the CPU before this is called). With TEST.CACHE_CLIPS the val loader decodes once and replays from memory."""
    clip = clip_spec_from_cfg(cfg)
    on_device = BACKENDS[clip.backend].on_device
    common = dict(data_dir=cfg.DATA.PATH_TO_DATA_DIR, num_classes=cfg.MODEL.NUM_CLASSES, clip=clip,
                  seed=cfg.RNG_SEED, num_retries=cfg.DATA.NUM_RETRIES, path_prefix=cfg.DATA.PATH_PREFIX,
                  device=device if on_device else torch.device("cpu"))
    train_set = KineticsDataset(split="train", train=True, **common)
    val_set = KineticsDataset(split="val", train=False, **common)
    train_sampler = TrainSampler(len(train_set), cfg.TRAIN.BATCH_SIZE, rank, world_size, cfg.RNG_SEED)
    train_batch = per_process_batch(cfg.TRAIN.BATCH_SIZE, world_size, "TRAIN.BATCH_SIZE")
    val_sampler, val_batch = ShardSampler(len(val_set), rank, world_size), -(-cfg.TEST.BATCH_SIZE // world_size)
    if on_device:
        train_loader = DeviceBatches(train_set, train_sampler, train_batch, drop_last=True, device=device)
        val_loader = DeviceBatches(val_set, val_sampler, val_batch, drop_last=False, device=device)
    else:
        if workers is None:
            workers = num_workers_here(cfg.DATA_LOADER.NUM_WORKERS, clip.backend)
        loader_args = dict(num_workers=workers, pin_memory=device.type == "cuda" and cfg.DATA_LOADER.PIN_MEMORY,
                           prefetch_factor=cfg.DATA_LOADER.PREFETCH_FACTOR)
        train_loader = build_loader(train_set, train_sampler, train_batch, drop_last=True, **loader_args)
        val_loader = build_loader(val_set, val_sampler, val_batch, drop_last=False, **loader_args)
    return train_loader, CachedValLoader(val_loader) if cfg.TEST.CACHE_CLIPS else val_loader
