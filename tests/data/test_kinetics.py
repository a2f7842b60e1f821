"""Kinetics-format dataset: CSV parsing errors, missing files, sample shapes, determinism, decode failures."""
from __future__ import annotations

import pathlib

import pytest
import torch

from vmb.data.kinetics import ClipSpec, KineticsDataset, read_split_csv
from vmb.errors import DataError

SPEC = ClipSpec(num_frames=4, sampling_rate=2, target_fps=10, train_jitter_scales=(32, 40),
                train_crop_size=32, test_crop_size=36)


def write_csv(tmp_path: pathlib.Path, text: str, name: str = "train.csv") -> pathlib.Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def dataset(data_dir, split="train", train=True, clip=SPEC, **kwargs) -> KineticsDataset:
    return KineticsDataset(data_dir, split, num_classes=4, clip=clip, train=train, **kwargs)


def test_read_split_csv(tmp_path):
    path = write_csv(tmp_path, "a/x.mp4 0\n\nb/y.mp4 3\n  c/z.mp4   1  \n")
    assert read_split_csv(path, 4) == [("a/x.mp4", 0), ("b/y.mp4", 3), ("c/z.mp4", 1)]


@pytest.mark.parametrize("text,line,what", [
    ("a.mp4 0\nb.mp4\n", 2, "expected 'path label'"),
    ("a.mp4 0\nb.mp4 1 extra\n", 2, "expected 'path label'"),
    ("a.mp4 zero\n", 1, "not an integer"),
    ("a.mp4 0\nb.mp4 1\nc.mp4 1.5\n", 3, "not an integer"),
    ("a.mp4 0\nb.mp4 4\n", 2, "out of range"),
    ("a.mp4 -1\n", 1, "out of range"),
])
def test_read_split_csv_errors_name_file_and_line(tmp_path, text, line, what):
    path = write_csv(tmp_path, text)
    with pytest.raises(DataError) as info:
        read_split_csv(path, 4)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}:"), message
    assert what in message
    assert "\n" not in message


def test_empty_csv(tmp_path):
    path = write_csv(tmp_path, "\n\n")
    with pytest.raises(DataError, match="empty"):
        read_split_csv(path, 4)


def test_binary_csv_is_one_line(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(b"a/x.mp4 0\n\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(DataError) as info:
        read_split_csv(path, 4)
    assert str(info.value).startswith(f"{path}: not a text (UTF-8) split file") and "\n" not in str(info.value)


def test_missing_csv(tmp_path):
    with pytest.raises(DataError) as info:
        read_split_csv(tmp_path / "val.csv", 4)
    assert str(tmp_path / "val.csv") in str(info.value)


def test_missing_data_dir(tmp_path):
    missing = tmp_path / "no_such_dir"
    with pytest.raises(DataError) as info:
        dataset(missing)
    assert str(missing) in str(info.value)
    assert "DATA.PATH_TO_DATA_DIR" in str(info.value)


def test_missing_split_csv_in_dataset(tiny_dataset_copy):
    (tiny_dataset_copy / "val.csv").unlink()
    with pytest.raises(DataError) as info:
        dataset(tiny_dataset_copy, "val", train=False)
    assert str(tiny_dataset_copy / "val.csv") in str(info.value)


def test_missing_listed_video(tiny_dataset_copy):
    victim = tiny_dataset_copy / "train" / "class2" / "001.mp4"
    victim.unlink()
    with pytest.raises(DataError) as info:
        dataset(tiny_dataset_copy)
    assert str(victim) in str(info.value)


def test_path_prefix(tiny_videos_dir, tmp_path):
    # CSVs in one folder, videos under another (DATA.PATH_PREFIX).
    csv_dir = tmp_path / "csvs"
    csv_dir.mkdir()
    (csv_dir / "val.csv").write_text((tiny_videos_dir / "val.csv").read_text())
    ds = dataset(csv_dir, "val", train=False, path_prefix=str(tiny_videos_dir))
    assert len(ds) == 7
    assert ds[0, 0][0].shape == (3, 4, 36, 36)


def test_lengths(tiny_videos_dir):
    assert len(dataset(tiny_videos_dir, "train")) == 16
    assert len(dataset(tiny_videos_dir, "val", train=False)) == 7


def test_train_sample(tiny_videos_dir):
    ds = dataset(tiny_videos_dir)
    clip, label, failures, augment = ds[0, 5]
    assert clip.shape == (3, 4, 32, 32) and clip.dtype == torch.uint8
    assert clip.is_contiguous()
    assert label == ds.entries[5][1]
    assert failures == 0
    assert augment.shape == (0,)  # no RandAugment / erasing in this spec


def test_val_sample(tiny_videos_dir):
    ds = dataset(tiny_videos_dir, "val", train=False)
    clip, label, failures, augment = ds[0, 6]
    assert clip.shape == (3, 4, 36, 36) and clip.dtype == torch.uint8
    assert label == 3 and failures == 0 and augment.shape == (0,)


def test_random_resized_crop_spec(tiny_videos_dir):
    spec = ClipSpec(num_frames=4, sampling_rate=2, target_fps=10, train_jitter_scales=(32, 40),
                    train_crop_size=24, test_crop_size=24, rrc_scale=(0.08, 1.0), rrc_ratio=(0.75, 1.333),
                    rand_augment=(2, 9.0, 0.5), erase_prob=0.25)
    ds = dataset(tiny_videos_dir, clip=spec)
    clip, _, _, augment = ds[1, 3]
    assert clip.shape == (3, 4, 24, 24)
    assert augment.shape == (2 * 4 + 6,)  # two ops and an erasing box, applied later on the device
    assert torch.equal(augment, ds[1, 3][3]) and not torch.equal(augment, ds[2, 3][3])


def test_validation_is_deterministic(tiny_videos_dir):
    ds = dataset(tiny_videos_dir, "val", train=False)
    a, b = ds[0, 2][0], ds[0, 2][0]
    assert torch.equal(a, b)
    # The epoch is irrelevant in validation.
    assert torch.equal(ds[5, 2][0], a)
    # A fresh dataset object gives the same clip.
    assert torch.equal(dataset(tiny_videos_dir, "val", train=False)[0, 2][0], a)


def test_training_clip_depends_only_on_seed_epoch_index(tiny_videos_dir):
    ds = dataset(tiny_videos_dir, seed=3)
    other = dataset(tiny_videos_dir, seed=3)
    a = ds[1, 4][0]
    ds[0, 0], ds[2, 9]  # other draws in between change nothing
    assert torch.equal(ds[1, 4][0], a)
    assert torch.equal(other[1, 4][0], a)
    # Another epoch (or seed) gives another crop/scale/flip/start: check over several epochs.
    assert any(not torch.equal(ds[epoch, 4][0], a) for epoch in range(2, 6))
    assert any(not torch.equal(dataset(tiny_videos_dir, seed=s)[1, 4][0], a) for s in range(4, 8))


def test_corrupt_training_video_is_replaced_and_counted(tiny_dataset_copy, corrupt_video):
    ds0 = dataset(tiny_dataset_copy)
    bad_index = 5
    corrupt_video(ds0.entries[bad_index][0])
    ds = dataset(tiny_dataset_copy)
    for epoch in range(3):
        clip, label, failures, _ = ds[epoch, bad_index]
        assert failures >= 1
        assert clip.shape == (3, 4, 32, 32)
        assert 0 <= label < 4
    # Good videos are untouched.
    assert ds[0, 0][2] == 0


def test_all_training_videos_corrupt_gives_up(tiny_dataset_copy, corrupt_video):
    for path in (tiny_dataset_copy / "train").rglob("*.mp4"):
        corrupt_video(path)
    ds = dataset(tiny_dataset_copy, num_retries=3)
    with pytest.raises(DataError, match="NUM_RETRIES=3"):
        ds[0, 0]


def test_corrupt_validation_video_raises(tiny_dataset_copy, corrupt_video):
    ds = dataset(tiny_dataset_copy, "val", train=False)
    bad = ds.entries[3][0]
    corrupt_video(bad)
    ds[0, 2]  # others still decode
    with pytest.raises(DataError) as info:
        ds[0, 3]
    assert str(bad) in str(info.value)
