"""The untimed pre-flight: every listed video opens, the CSVs agree with manifest.json, DATA.FINGERPRINT holds;
failures are one line naming the count and the first bad files."""
from __future__ import annotations

import json
import shutil

import av
import numpy as np
import pytest

from vmb.data.prepare.manifest import MANIFEST
from vmb.data.preflight import check_dataset, probe_video
from vmb.errors import DataError
from tiny_manifest import write_tiny_manifest

TOTAL = 23  # tiny dataset: 16 train + 7 val videos


def add_manifest(root) -> dict:
    return write_tiny_manifest(root, "kinetics20")


def damage_frames(path) -> None:
    """Zero the coded frames of an mp4 (its mdat payload); the header still opens."""
    data = bytearray(path.read_bytes())
    at = data.find(b"mdat")
    size = int.from_bytes(data[at - 4:at], "big")
    data[at + 4:at - 4 + size] = bytes(size - 8)
    path.write_bytes(bytes(data))


def write_audio_only(path) -> None:
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)


def one_error(data_dir, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        check_dataset(data_dir, 4, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_clean_dataset_passes(tiny_videos_dir):
    assert check_dataset(tiny_videos_dir, 4) == TOTAL


def test_bad_files_are_counted_and_the_first_named(tiny_dataset_copy, corrupt_video):
    (tiny_dataset_copy / "train" / "class0" / "001.mp4").unlink()
    (tiny_dataset_copy / "train" / "class1" / "000.mp4").write_bytes(b"")
    corrupt_video(tiny_dataset_copy / "train" / "class2" / "003.mp4")
    write_audio_only(tiny_dataset_copy / "val" / "class3" / "000.mp4")
    message = one_error(tiny_dataset_copy)
    assert message.startswith(f"{tiny_dataset_copy}: 4 of {TOTAL} listed videos cannot be used, first: ")
    assert f"{tiny_dataset_copy / 'train/class0/001.mp4'} (missing)" in message
    assert f"{tiny_dataset_copy / 'train/class1/000.mp4'} (zero bytes)" in message
    assert f"{tiny_dataset_copy / 'train/class2/003.mp4'} (cannot be opened: " in message
    assert "val/class3/000.mp4" not in message  # only the first three are named
    assert message.endswith("replace those files or remove them from the CSVs")
    assert probe_video(tiny_dataset_copy / "val" / "class3" / "000.mp4")[1] == "no video stream"


def test_only_headers_are_read(tiny_dataset_copy):
    # Frames that do not decode pass: the pre-flight never decodes (the loader counts such videos).
    damage_frames(tiny_dataset_copy / "train" / "class0" / "000.mp4")
    assert check_dataset(tiny_dataset_copy, 4) == TOTAL


def test_videos_under_path_prefix(tiny_dataset_copy, tmp_path):
    videos = tmp_path / "videos"
    for split in ("train", "val"):
        shutil.move(str(tiny_dataset_copy / split), str(videos / split))
    assert check_dataset(tiny_dataset_copy, 4, path_prefix=str(videos)) == TOTAL
    (videos / "val" / "class0" / "000.mp4").unlink()
    assert f"1 of {TOTAL}" in one_error(tiny_dataset_copy, path_prefix=str(videos))


def test_manifest_must_match_the_csvs(tiny_dataset_copy):
    add_manifest(tiny_dataset_copy)
    assert check_dataset(tiny_dataset_copy, 4) == TOTAL
    lines = (tiny_dataset_copy / "train.csv").read_text().splitlines()
    lines[0] = lines[0].rsplit(" ", 1)[0] + " 3"  # train/class0/000.mp4 relabelled
    (tiny_dataset_copy / "train.csv").write_text("\n".join(lines[:-1]) + "\n")  # and the last one dropped
    message = one_error(tiny_dataset_copy)
    assert f"train.csv/val.csv do not match {MANIFEST}" in message
    assert "1 CSV entries not in it, first: train/class0/000.mp4 (train, label 3)" in message
    assert "2 of its clips not in the CSVs, first: train/class0/000.mp4 (train, label 0), " \
           "train/class3/003.mp4 (train, label 3)" in message
    assert message.endswith("re-run tools/prepare_kinetics20.py")


def test_sizes_must_match_the_manifest(tiny_dataset_copy):
    manifest = add_manifest(tiny_dataset_copy)
    video = tiny_dataset_copy / "val" / "class1" / "001.mp4"
    size = next(c["bytes"] for c in manifest["clips"] if c["path"] == "val/class1/001.mp4")
    video.write_bytes(video.read_bytes() + b"\0" * 10)  # still opens
    message = one_error(tiny_dataset_copy)
    assert f"1 of {TOTAL} listed videos cannot be used, first: {video} ({size + 10} bytes, {MANIFEST} says {size})" \
        in message


def test_fingerprint_needs_a_manifest(tiny_dataset_copy):
    assert "no manifest" in one_error(tiny_dataset_copy, fingerprint="sha256:" + "0" * 64)


def test_fingerprint_must_equal_the_manifest(tiny_dataset_copy):
    fingerprint = add_manifest(tiny_dataset_copy)["fingerprint"]
    assert check_dataset(tiny_dataset_copy, 4, fingerprint=fingerprint) == TOTAL
    message = one_error(tiny_dataset_copy, fingerprint="sha256:" + "0" * 64)
    assert f"fingerprint {fingerprint} is not DATA.FINGERPRINT sha256:{'0' * 64}" in message


def test_edited_manifest_is_refused(tiny_dataset_copy):
    add_manifest(tiny_dataset_copy)
    path = tiny_dataset_copy / MANIFEST
    data = json.loads(path.read_text())
    data["clips"][3]["label"] = "class3"
    path.write_text(json.dumps(data))
    assert "stored fingerprint does not match" in one_error(tiny_dataset_copy)


def test_missing_folder_and_csv(tiny_dataset_copy, tmp_path):
    assert "data directory not found" in one_error(tmp_path / "nowhere")
    (tiny_dataset_copy / "val.csv").unlink()
    assert f"{tiny_dataset_copy / 'val.csv'}: split file not found" in one_error(tiny_dataset_copy)
