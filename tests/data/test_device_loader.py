"""Device decoding (vmb.data.device_loader) on the CPU, with a stand-in device decoder: the same batches as the pyav
path in the same order (clips, labels, failure counts, augmentation draws, retries), decoding overlapped with the
step so that a loop slower than decoding never waits, and errors and early exits handled."""
from __future__ import annotations

import threading
import time

import pytest
import torch

from vmb.config import load_config
from vmb.data import loader as loader_module
from vmb.data.device_loader import DeviceBatches
from vmb.data.kinetics import KineticsDataset
from vmb.data.loader import (CachedValLoader, ShardSampler, TrainSampler, build_loader, build_loaders,
                             clip_spec_from_cfg, num_workers_here)
from vmb.backends import BACKENDS, Backend
from vmb.data.video import batch_decoder
from vmb.engine.meters import DataWait, timed_batches
from vmb.errors import ConfigError, DataError

BATCH = 4


def tiny_cfg(data_dir, *extra):
    """The tiny dataset with RandAugment and erasing on, so that every augmentation draw is compared."""
    return load_config(None, [
        "DATA.PATH_TO_DATA_DIR", str(data_dir), "MODEL.NUM_CLASSES", "4", "DATA.NUM_FRAMES", "4",
        "DATA.SAMPLING_RATE", "2", "DATA.TARGET_FPS", "10", "DATA.TRAIN_CROP_SIZE", "32",
        "DATA.TEST_CROP_SIZE", "32", "DATA.TRAIN_JITTER_SCALES", "[32, 40]", "TRAIN.BATCH_SIZE", str(BATCH),
        "TEST.BATCH_SIZE", "3", "DATA_LOADER.NUM_WORKERS", "0", "AUG.ENABLE", "True", "AUG.RE_PROB", "0.5",
        "RNG_SEED", "3", *extra])


def standin_decoder(delay_s: float = 0.0, calls: list | None = None):
    """A stand-in device decoder: PyAV's decoding (the same frames) behind a batch call that takes `delay_s` more,
    recording the size of each call in `calls`."""
    pyav = batch_decoder("pyav", torch.device("cpu"))

    def decode_batch(requests):
        if calls is not None:
            calls.append(len(requests))
        time.sleep(delay_s)
        return pyav(requests)

    return decode_batch


def datasets(cfg, split: str, train: bool, decoder) -> tuple[KineticsDataset, KineticsDataset]:
    """(the pyav dataset, the same split decoded by `decoder`)."""
    common = dict(data_dir=cfg.DATA.PATH_TO_DATA_DIR, split=split, num_classes=4, clip=clip_spec_from_cfg(cfg),
                  train=train, seed=cfg.RNG_SEED)
    host, device = KineticsDataset(**common), KineticsDataset(**common)
    device.decode_batch = decoder
    return host, device


def assert_same_batches(expected: list, got: list) -> None:
    assert len(got) == len(expected)
    for (clips, labels, failures, augment), (d_clips, d_labels, d_failures, d_augment) in zip(expected, got):
        assert torch.equal(d_clips, clips) and torch.equal(d_labels, labels)
        assert torch.equal(d_failures, failures) and torch.equal(d_augment, augment)


@pytest.fixture
def data_with_damaged_videos(tiny_dataset_copy, corrupt_video):
    """The tiny dataset with two damaged videos listed in train.csv, so that retries happen."""
    for index in range(2):
        corrupt_video(tiny_dataset_copy / "train" / f"damaged{index}.mp4", seed=index)
    with open(tiny_dataset_copy / "train.csv", "a") as csv:
        csv.write("train/damaged0.mp4 0\ntrain/damaged1.mp4 2\n")
    return tiny_dataset_copy


def test_training_batches_equal_the_pyav_path(data_with_damaged_videos):
    """Two epochs of training batches, retries of damaged videos included: identical to a DataLoader's."""
    cfg = tiny_cfg(data_with_damaged_videos)
    calls = []
    host, device = datasets(cfg, "train", True, standin_decoder(calls=calls))
    total_failures = 0
    for epoch in range(2):
        sampler = TrainSampler(len(host), BATCH, 0, 1, cfg.RNG_SEED)
        sampler.set_epoch(epoch)
        expected = list(build_loader(host, sampler, BATCH, 0, pin_memory=False, prefetch_factor=2, drop_last=True))
        got = list(DeviceBatches(device, sampler, BATCH, drop_last=True, device=torch.device("cpu")))
        assert_same_batches(expected, got)
        total_failures += sum(int(batch[2].sum()) for batch in got)
    assert total_failures > 0  # the damaged videos were drawn and replaced, identically
    assert max(calls) == BATCH  # a batch is decoded in one call (retries in further, smaller ones)


def test_two_processes_split_the_same_global_batches(tiny_videos_dir):
    cfg = tiny_cfg(tiny_videos_dir)
    host, device = datasets(cfg, "train", True, standin_decoder())
    for rank in range(2):
        sampler = TrainSampler(len(host), BATCH, rank, 2, cfg.RNG_SEED)
        expected = list(build_loader(host, sampler, BATCH // 2, 0, pin_memory=False, prefetch_factor=2,
                                     drop_last=True))
        assert_same_batches(expected, list(DeviceBatches(device, sampler, BATCH // 2, True, torch.device("cpu"))))


@pytest.mark.parametrize("world_size", [1, 2])
def test_validation_batches_count_every_video_once(tiny_videos_dir, world_size):
    """Validation shards (7 videos, batches of 3 over the processes): unpadded, the last batch shorter, and the
    same clips as the pyav path; the cached replay (TEST.CACHE_CLIPS) gives them again."""
    cfg = tiny_cfg(tiny_videos_dir)
    host, device = datasets(cfg, "val", False, standin_decoder())
    seen = 0
    for rank in range(world_size):
        sampler = ShardSampler(len(host), rank, world_size)
        expected = list(build_loader(host, sampler, 3, 0, pin_memory=False, prefetch_factor=2, drop_last=False))
        cached = CachedValLoader(DeviceBatches(device, sampler, 3, drop_last=False, device=torch.device("cpu")))
        assert_same_batches(expected, list(cached))
        assert_same_batches(expected, list(cached))  # replayed from memory
        seen += sum(len(batch[1]) for batch in expected)
    assert seen == len(host) == 7


def test_a_loop_slower_than_decoding_never_waits(tiny_videos_dir):
    """Decoding (0.05 s a batch more than PyAV's, in the thread) overlaps a 0.3 s step: after the first batch the
    loop finds each batch ready (decoding in the loop would wait at least 0.05 s a batch)."""
    cfg = tiny_cfg(tiny_videos_dir)
    _, device = datasets(cfg, "train", True, standin_decoder(delay_s=0.05))
    sampler = TrainSampler(len(device), BATCH, 0, 1, cfg.RNG_SEED)
    waits = []
    for _ in timed_batches(DeviceBatches(device, sampler, BATCH, True, torch.device("cpu")), (clock := DataWait(),)):
        waits.append(clock.wait_s)
        time.sleep(0.3)  # the training step
    per_batch = [b - a for a, b in zip(waits, waits[1:])]
    assert len(waits) == 4 and waits[0] >= 0.05  # the first batch is waited for
    assert max(per_batch) < 0.025, per_batch


def test_an_error_in_the_decoding_thread_reaches_the_loop(tiny_videos_dir):
    cfg = tiny_cfg(tiny_videos_dir)
    host, device = datasets(cfg, "val", False, standin_decoder())
    device.entries[4] = (device.entries[4][0].with_name("missing.mp4"), device.entries[4][1])
    batches = DeviceBatches(device, ShardSampler(len(host), 0, 1), 3, drop_last=False, device=torch.device("cpu"))
    with pytest.raises(DataError, match="missing.mp4"):
        list(batches)


def test_leaving_early_stops_the_thread(tiny_videos_dir):
    """The loop breaks at the target mid-epoch: the decoding thread ends instead of filling its queue forever."""
    cfg = tiny_cfg(tiny_videos_dir)
    _, device = datasets(cfg, "train", True, standin_decoder())
    before = threading.active_count()
    for _ in DeviceBatches(device, TrainSampler(len(device), BATCH, 0, 1, 0), BATCH, True, torch.device("cpu"),
                           depth=1):
        break
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before


def test_build_loaders_picks_device_batches_for_an_on_device_backend(tiny_videos_dir, monkeypatch):
    """An on-device backend (here torchcodec_cuda's registry entry pointed at the stand-in) gets DeviceBatches
    for both splits, with no data-loader workers; host backends keep the DataLoader."""
    monkeypatch.setitem(BACKENDS, "torchcodec_cuda", Backend(f"{__name__}:standin_factory", on_device=True))
    cfg = tiny_cfg(tiny_videos_dir, "DATA.DECODING_BACKEND", "torchcodec_cuda", "TEST.CACHE_CLIPS", "True")
    train, val = build_loaders(cfg, 0, 1, torch.device("cpu"))
    assert isinstance(train, DeviceBatches) and isinstance(val, CachedValLoader)
    assert isinstance(val._loader, DeviceBatches) and len(val.dataset) == 7
    assert num_workers_here("auto", "torchcodec_cuda") == 0
    host_train, _ = build_loaders(tiny_cfg(tiny_videos_dir), 0, 1, torch.device("cpu"))
    assert isinstance(host_train, torch.utils.data.DataLoader)
    assert_same_batches(list(host_train), list(train))


def standin_factory(device: torch.device):
    """The registry's factory signature, (device) -> batch decoder, for the stand-in."""
    return standin_decoder()


def test_an_on_device_backend_with_workers_is_refused_when_the_config_loads(tiny_videos_dir):
    for backend in ("torchcodec_cuda", "dali"):
        with pytest.raises(ConfigError, match=f"DECODING_BACKEND {backend} .* set DATA_LOADER.NUM_WORKERS 0"):
            tiny_cfg(tiny_videos_dir, "DATA.DECODING_BACKEND", backend, "DATA_LOADER.NUM_WORKERS", "2")
        assert tiny_cfg(tiny_videos_dir, "DATA.DECODING_BACKEND", backend).DATA_LOADER.NUM_WORKERS == 0


def test_workers_start_by_fork():
    """Python 3.14 defaults to forkserver on Linux, which would start workers that bypass the bad-fork check and
    open CUDA contexts of their own: VMB's workers are forked."""
    assert loader_module.WORKER_START == "fork"


def test_data_loader_workers_are_forked(tiny_videos_dir):
    cfg = tiny_cfg(tiny_videos_dir)
    train, _ = build_loaders(cfg, 0, 1, torch.device("cpu"), workers=1)
    assert train.multiprocessing_context.get_start_method() == "fork"
    assert len(list(train)) == 4
