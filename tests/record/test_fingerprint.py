"""Dataset fingerprint: the manifest's for prepared data, a labelled cheap fallback without one; never a
video byte read."""
from __future__ import annotations

import builtins
import io
import re

import pytest

from vmb.files import sha256_file
from vmb.record.fingerprint import dataset_fingerprint
from tiny_manifest import write_tiny_manifest

UNPREPARED = re.compile(r"unprepared:sha256:[0-9a-f]{64}")


def add_manifest(root) -> dict:
    return write_tiny_manifest(root)


def test_without_manifest_the_fallback_is_labelled_and_stable(tiny_videos_dir, tiny_dataset_copy):
    a = dataset_fingerprint(tiny_videos_dir, 4)
    assert UNPREPARED.fullmatch(a)
    assert dataset_fingerprint(tiny_videos_dir, 4) == a
    assert dataset_fingerprint(tiny_dataset_copy, 4) == a  # location does not matter


def test_fallback_follows_the_lists_and_the_sizes(tiny_dataset_copy, tiny_videos_dir):
    base = dataset_fingerprint(tiny_videos_dir, 4)
    video = tiny_dataset_copy / "val" / "class3" / "000.mp4"
    data = bytearray(video.read_bytes())
    data[-1] ^= 1
    video.write_bytes(bytes(data))
    assert dataset_fingerprint(tiny_dataset_copy, 4) == base  # same size: the cheap fallback cannot see it
    video.write_bytes(bytes(data) + b"\0")
    resized = dataset_fingerprint(tiny_dataset_copy, 4)
    assert resized != base
    (tiny_dataset_copy / "train.csv").write_text((tiny_dataset_copy / "train.csv").read_text() + "\n")
    assert dataset_fingerprint(tiny_dataset_copy, 4) != resized


def test_unlisted_files_do_not_count(tiny_dataset_copy, tiny_videos_dir):
    (tiny_dataset_copy / "notes.txt").write_text("not part of the dataset")
    (tiny_dataset_copy / "train" / "extra.mp4").write_bytes(b"junk")
    assert dataset_fingerprint(tiny_dataset_copy, 4) == dataset_fingerprint(tiny_videos_dir, 4)


def test_manifest_fingerprint_is_recorded(tiny_dataset_copy):
    manifest = add_manifest(tiny_dataset_copy)
    assert dataset_fingerprint(tiny_dataset_copy, 4) == manifest["fingerprint"]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", manifest["fingerprint"])


@pytest.mark.parametrize("with_manifest", [False, True])
def test_no_video_is_read(tiny_dataset_copy, monkeypatch, with_manifest):
    if with_manifest:
        add_manifest(tiny_dataset_copy)
    opened = []
    real_open = builtins.open

    def recording_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", recording_open)
    monkeypatch.setattr(io, "open", recording_open)  # pathlib's read_text
    dataset_fingerprint(tiny_dataset_copy, 4)
    assert opened and not [name for name in opened if name.endswith(".mp4")]


def test_sha256_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert sha256_file(path) == ("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", 3)
