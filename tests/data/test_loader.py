"""Samplers and batch splitting: the global batch is the same for any process count; validation is exact."""
from __future__ import annotations

import os

import pytest
import torch

from vmb.config import load_config
from vmb.data.kinetics import KineticsDataset
from vmb.launch import processes_per_node
from vmb.data.loader import (CachedValLoader, ShardSampler, TrainSampler, build_loaders, clip_spec_from_cfg,
                             num_workers_here, per_process_batch, resolve_num_workers,
                             usable_cores)
from vmb.errors import ConfigError


def global_batches(num_samples, global_batch, world_size, seed, epoch):
    """For each global step, the list of per-rank batches (lists of indices)."""
    per_rank = []
    local = global_batch // world_size
    for rank in range(world_size):
        sampler = TrainSampler(num_samples, global_batch, rank, world_size, seed)
        sampler.set_epoch(epoch)
        keys = list(sampler)
        assert len(keys) == len(sampler)
        assert all(e == epoch for e, _ in keys)
        indices = [i for _, i in keys]
        per_rank.append([indices[k:k + local] for k in range(0, len(indices), local)])
    steps = len(per_rank[0])
    assert all(len(batches) == steps for batches in per_rank)
    return [[per_rank[r][s] for r in range(world_size)] for s in range(steps)]


@pytest.mark.parametrize("world_size", [2, 4])
def test_union_of_rank_batches_is_the_global_batch(world_size):
    num_samples, global_batch, seed = 37, 8, 5
    for epoch in range(3):
        single = global_batches(num_samples, global_batch, 1, seed, epoch)
        multi = global_batches(num_samples, global_batch, world_size, seed, epoch)
        assert len(single) == len(multi) == num_samples // global_batch
        for one, many in zip(single, multi):
            union = [i for batch in many for i in batch]
            assert len(union) == global_batch
            assert set(union) == set(one[0])


def test_epoch_is_a_permutation_of_full_batches():
    num_samples, global_batch = 37, 8
    sampler = TrainSampler(num_samples, global_batch, 0, 1, seed=0)
    for epoch in range(4):
        sampler.set_epoch(epoch)
        indices = [i for _, i in sampler]
        assert len(indices) == 32 == len(sampler)
        assert len(set(indices)) == 32  # no repeats
        assert set(indices) <= set(range(num_samples))


def test_different_epochs_and_seeds_shuffle_differently():
    sampler = TrainSampler(50, 10, 0, 1, seed=0)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        orders.append([i for _, i in sampler])
    assert orders[0] != orders[1] != orders[2]
    # Same (seed, epoch): same order, also from a new sampler.
    again = TrainSampler(50, 10, 0, 1, seed=0)
    again.set_epoch(1)
    assert [i for _, i in again] == orders[1]
    other_seed = TrainSampler(50, 10, 0, 1, seed=1)
    other_seed.set_epoch(1)
    assert [i for _, i in other_seed] != orders[1]


def test_train_sampler_len_per_rank():
    assert len(TrainSampler(37, 8, 1, 2, 0)) == 16
    assert len(TrainSampler(16, 4, 0, 4, 0)) == 4


def test_train_sampler_batch_larger_than_dataset():
    with pytest.raises(ConfigError, match="TRAIN.BATCH_SIZE"):
        TrainSampler(5, 8, 0, 1, 0)


@pytest.mark.parametrize("num_samples", [1, 7, 10, 13])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_shard_sampler_covers_every_index_once(num_samples, world_size):
    seen = []
    for rank in range(world_size):
        sampler = ShardSampler(num_samples, rank, world_size)
        keys = list(sampler)
        assert len(keys) == len(sampler)
        assert all(epoch == 0 for epoch, _ in keys)
        seen.extend(i for _, i in keys)
    assert sorted(seen) == list(range(num_samples))  # no padding, no duplicates


def test_shard_sizes_10_over_4():
    assert [len(ShardSampler(10, r, 4)) for r in range(4)] == [3, 3, 2, 2]


def test_per_process_batch():
    assert per_process_batch(16, 4, "TRAIN.BATCH_SIZE") == 4
    assert per_process_batch(16, 1, "TRAIN.BATCH_SIZE") == 16
    with pytest.raises(ConfigError) as info:
        per_process_batch(10, 4, "TRAIN.BATCH_SIZE")
    assert "TRAIN.BATCH_SIZE" in str(info.value) and "10" in str(info.value)


def tiny_cfg(data_dir, *extra):
    return load_config(None, [
        "DATA.PATH_TO_DATA_DIR", str(data_dir), "MODEL.NUM_CLASSES", "4", "DATA.NUM_FRAMES", "4",
        "DATA.SAMPLING_RATE", "2", "DATA.TARGET_FPS", "10", "DATA.TRAIN_CROP_SIZE", "32",
        "DATA.TEST_CROP_SIZE", "32", "DATA.TRAIN_JITTER_SCALES", "[32, 40]", "TRAIN.BATCH_SIZE", "4",
        "TEST.BATCH_SIZE", "3", "DATA_LOADER.NUM_WORKERS", "0", *extra])


def test_clip_spec_from_cfg(tiny_videos_dir):
    spec = clip_spec_from_cfg(tiny_cfg(tiny_videos_dir))
    assert (spec.num_frames, spec.sampling_rate, spec.target_fps) == (4, 2, 10)
    assert spec.train_jitter_scales == (32, 40)
    assert spec.rand_augment is None and spec.erase_prob == 0.0
    aug = clip_spec_from_cfg(tiny_cfg(tiny_videos_dir, "AUG.ENABLE", "True", "AUG.RE_PROB", "0.25"))
    assert aug.rand_augment == (4, 7.0, 0.5) and aug.erase_prob == 0.25
    assert spec.backend == "pyav"
    assert clip_spec_from_cfg(tiny_cfg(tiny_videos_dir, "DATA.DECODING_BACKEND", "torchcodec")).backend == "torchcodec"


@pytest.mark.parametrize("setting, cores, processes, expected", [
    (3, 64, 8, 3),          # a number is taken as is
    (0, 64, 1, 0),
    ("auto", 2, 1, 1),      # this project's 2-core machine: one core decodes, one trains
    ("auto", 1, 1, 0),      # a single core: decode in the training loop
    ("auto", 16, 4, 3),     # 4 GPUs on 16 cores: 4 cores each, one of them for the training loop
    ("auto", 16, 8, 1),     # 2 cores each: at least one worker
    ("auto", 3, 2, 0),      # 1 core each (the odd core is left over)
    ("auto", 8, 16, 0),     # more processes than cores
])
def test_resolve_num_workers(setting, cores, processes, expected):
    assert resolve_num_workers(setting, cores, processes) == expected


@pytest.mark.parametrize("env, expected", [
    ({"LOCAL_WORLD_SIZE": "4", "WORLD_SIZE": "8"}, 4),  # torchrun, 2 machines x 4 processes
    ({"WORLD_SIZE": "2"}, 2),                          # run_net.py spawned 2 processes on this machine
    ({}, 1),
])
def test_processes_per_node(monkeypatch, env, expected):
    for name in ("LOCAL_WORLD_SIZE", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert processes_per_node() == expected


def test_usable_cores_follow_the_affinity(monkeypatch):
    if hasattr(os, "sched_getaffinity"):
        assert usable_cores() == len(os.sched_getaffinity(0))
        monkeypatch.delattr(os, "sched_getaffinity")
    assert usable_cores() == (os.cpu_count() or 1)


def test_auto_workers_here(monkeypatch, tiny_videos_dir):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    expected = max(0, usable_cores() - 1)
    assert num_workers_here("auto", "pyav") == expected and num_workers_here(2, "pyav") == 2
    train, val = build_loaders(tiny_cfg(tiny_videos_dir, "DATA_LOADER.NUM_WORKERS", "auto"), 0, 1, torch.device("cpu"))
    assert train.num_workers == val.num_workers == expected
    train, val = build_loaders(tiny_cfg(tiny_videos_dir), 0, 1, torch.device("cpu"), workers=1)
    assert train.num_workers == val.num_workers == 1


def test_build_loaders_two_ranks(tiny_videos_dir):
    cfg = tiny_cfg(tiny_videos_dir)
    val_total = 0
    for rank in range(2):
        train, val = build_loaders(cfg, rank, 2, torch.device("cpu"))
        batches = list(train)
        assert len(batches) == 16 // 4
        clips, labels, failures, augment = batches[0]
        assert clips.shape == (2, 3, 4, 32, 32)  # global batch 4 split over 2 ranks
        assert labels.shape == (2,) and int(failures.sum()) == 0
        val_total += sum(len(labels) for _, labels, *_ in val)
    assert val_total == 7


def test_build_loaders_uneven_batch(tiny_videos_dir):
    cfg = tiny_cfg(tiny_videos_dir, "TRAIN.BATCH_SIZE", "6")
    with pytest.raises(ConfigError, match="TRAIN.BATCH_SIZE"):
        build_loaders(cfg, 0, 4, torch.device("cpu"))


def test_cached_val_loader_replays_the_first_pass_without_decoding(tiny_videos_dir, monkeypatch):
    _, decoding = build_loaders(tiny_cfg(tiny_videos_dir), 0, 1, torch.device("cpu"))
    _, cached = build_loaders(tiny_cfg(tiny_videos_dir, "TEST.CACHE_CLIPS", "True"), 0, 1, torch.device("cpu"))
    assert isinstance(cached, CachedValLoader) and len(cached) == len(decoding) == 3
    expected = list(decoding)
    reads = []
    original = KineticsDataset.__getitem__
    monkeypatch.setattr(KineticsDataset, "__getitem__", lambda self, key: reads.append(key) or original(self, key))
    for _ in range(3):
        batches = list(cached)
        assert len(batches) == len(expected)
        for (clips, labels, *_), (want_clips, want_labels, *_) in zip(batches, expected):
            assert torch.equal(clips, want_clips) and torch.equal(labels, want_labels)
    assert len(reads) == 7  # every val video decoded once, in the first pass only


def test_cached_val_loader_keeps_nothing_from_an_unfinished_pass(tiny_videos_dir, monkeypatch):
    _, cached = build_loaders(tiny_cfg(tiny_videos_dir, "TEST.CACHE_CLIPS", "True"), 0, 1, torch.device("cpu"))
    next(iter(cached))  # a pass abandoned after one batch
    reads = []
    original = KineticsDataset.__getitem__
    monkeypatch.setattr(KineticsDataset, "__getitem__", lambda self, key: reads.append(key) or original(self, key))
    assert sum(len(labels) for _, labels, *_ in cached) == 7
    assert len(reads) == 7  # the full pass decoded again


class _SignalDispositions(torch.utils.data.Dataset):
    """Each item: how the process that loads it handles the preemption signals."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> torch.Tensor:
        import signal
        from vmb.launch import PREEMPTION_SIGNALS
        return torch.tensor([signal.getsignal(s) == signal.SIG_IGN for s in PREEMPTION_SIGNALS])


def test_workers_ignore_the_preemption_signals():
    """A scheduler signals every process of a job; the workers leave the stop to the training process."""
    from vmb.data.loader import build_loader

    dataset = _SignalDispositions()
    loader = build_loader(dataset, torch.utils.data.SequentialSampler(dataset), batch_size=2, num_workers=1,
                          pin_memory=False, prefetch_factor=2, drop_last=False)
    assert next(iter(loader)).all()
    assert not _SignalDispositions()[0].any()  # the training process itself keeps its handlers
