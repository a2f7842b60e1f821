"""Dataset fingerprint: changes with any listed byte, and only with those."""
from __future__ import annotations

import re

from vmb.bench.fingerprint import dataset_fingerprint, file_sha256


def test_stable_and_formatted(tiny_videos_dir):
    a = dataset_fingerprint(tiny_videos_dir, 4)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", a)
    assert dataset_fingerprint(tiny_videos_dir, 4) == a


def test_changes_with_video_bytes_and_csv(tiny_dataset_copy, tiny_videos_dir):
    base = dataset_fingerprint(tiny_videos_dir, 4)
    assert dataset_fingerprint(tiny_dataset_copy, 4) == base  # location does not matter
    video = tiny_dataset_copy / "val" / "class3" / "000.mp4"
    data = bytearray(video.read_bytes())
    data[-1] ^= 1
    video.write_bytes(bytes(data))
    changed_video = dataset_fingerprint(tiny_dataset_copy, 4)
    assert changed_video != base
    (tiny_dataset_copy / "train.csv").write_text((tiny_dataset_copy / "train.csv").read_text() + "\n")
    assert dataset_fingerprint(tiny_dataset_copy, 4) != changed_video


def test_unlisted_files_do_not_count(tiny_dataset_copy, tiny_videos_dir):
    (tiny_dataset_copy / "notes.txt").write_text("not part of the dataset")
    (tiny_dataset_copy / "train" / "extra.mp4").write_bytes(b"junk")
    assert dataset_fingerprint(tiny_dataset_copy, 4) == dataset_fingerprint(tiny_videos_dir, 4)


def test_file_sha256(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
