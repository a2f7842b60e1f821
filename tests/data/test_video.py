"""Video decoding: shapes, resizing, which frames are decoded, short videos, unreadable files."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vmb.data.video import decode_sampled
from vmb.errors import DataError

TOL = 3  # grey levels survive a qp-0 yuv420p round trip within +-2


def levels(clip: torch.Tensor) -> list[float]:
    """Mean grey level of each frame of a (T, H, W, 3) clip."""
    return clip.float().mean(dim=(1, 2, 3)).tolist()


def expected_indices(num_video_frames: int, fps: float, num_frames: int, rate: int, target_fps: float) -> list[int]:
    """Frames shown at a centred clip's instants, computed independently of vmb.data.sampling."""
    duration = num_video_frames / fps
    clip = num_frames * rate / target_fps
    start = max(0.0, duration - clip) / 2
    return [min(num_video_frames - 1, math.floor((start + i * rate / target_fps) * fps + 1e-6))
            for i in range(num_frames)]


def test_shape_dtype_count(tiny_videos_dir):
    path = next((tiny_videos_dir / "train").rglob("*.mp4"))
    clip = decode_sampled(path, 8, 2, 10, None)
    assert clip.dtype == torch.uint8
    assert clip.shape == (8, 40, 48, 3)


@pytest.mark.parametrize("short_side,expected_hw", [(20, (20, 24)), (32, (32, 38)), (80, (80, 96))])
def test_short_side_resize_landscape(tiny_videos_dir, short_side, expected_hw):
    path = next((tiny_videos_dir / "val").rglob("*.mp4"))
    clip = decode_sampled(path, 4, 1, 10, None, short_side=short_side)
    assert clip.shape == (4, *expected_hw, 3)


def test_short_side_resize_portrait(tmp_path, make_video):
    frames = np.zeros((6, 48, 32, 3), dtype=np.uint8)  # H 48 > W 32
    path = make_video(tmp_path / "portrait.mp4", frames, 10)
    clip = decode_sampled(path, 3, 1, 10, None, short_side=16)
    assert clip.shape == (3, 24, 16, 3)


@pytest.mark.parametrize("num_frames,rate", [(8, 1), (4, 3), (5, 2)])
def test_centred_clip_decodes_the_right_frames(tmp_path, make_gray_video, num_frames, rate):
    n, fps = 20, 10
    path = make_gray_video(tmp_path / "gray.mp4", n, fps)
    clip = decode_sampled(path, num_frames, rate, fps, None)
    expected = [10 * i for i in expected_indices(n, fps, num_frames, rate, fps)]
    assert levels(clip) == pytest.approx(expected, abs=TOL)


def test_centred_clip_sampling_rate_1_is_consecutive(tmp_path, make_gray_video):
    # 20 frames, 8-frame clip at the file's own rate: the centred clip is frames 6..13.
    path = make_gray_video(tmp_path / "gray.mp4", 20, 10)
    clip = decode_sampled(path, 8, 1, 10, None)
    assert levels(clip) == pytest.approx([10 * i for i in range(6, 14)], abs=TOL)


def test_target_fps_differs_from_file_fps(tmp_path, make_gray_video):
    # Sampling on a 20 fps grid from a 10 fps file shows every frame twice.
    path = make_gray_video(tmp_path / "gray.mp4", 20, 10)
    clip = decode_sampled(path, 8, 1, 20, None)
    got = levels(clip)
    expected = [10 * i for i in expected_indices(20, 10, 8, 1, 20)]
    assert got == pytest.approx(expected, abs=TOL)
    assert got[0::2] == pytest.approx(got[1::2], abs=0.5)


def test_random_start_decodes_consecutive_frames(tmp_path, make_gray_video):
    path = make_gray_video(tmp_path / "gray.mp4", 24, 10)
    seen_starts = set()
    for seed in range(6):
        got = levels(decode_sampled(path, 6, 1, 10, np.random.default_rng(seed)))
        first = round(got[0] / 10)
        assert 0 <= first <= 24 - 6
        assert got == pytest.approx([10 * (first + i) for i in range(6)], abs=TOL)
        seen_starts.add(first)
    assert len(seen_starts) > 1  # the start really is random


def test_same_rng_seed_same_clip(tiny_videos_dir):
    path = next((tiny_videos_dir / "train").rglob("*.mp4"))
    a = decode_sampled(path, 4, 2, 10, np.random.default_rng(11), short_side=36)
    b = decode_sampled(path, 4, 2, 10, np.random.default_rng(11), short_side=36)
    assert torch.equal(a, b)


def test_short_video_repeats_last_frame(tmp_path, make_gray_video):
    path = make_gray_video(tmp_path / "short.mp4", 5, 10)
    for rng in (None, np.random.default_rng(0)):
        clip = decode_sampled(path, 8, 1, 10, rng)
        assert clip.shape[0] == 8
        assert levels(clip) == pytest.approx([0, 10, 20, 30, 40, 40, 40, 40], abs=TOL)


def test_single_frame_video(tmp_path, make_gray_video):
    path = make_gray_video(tmp_path / "one.mp4", 1, 10)
    clip = decode_sampled(path, 4, 2, 10, None)
    assert clip.shape == (4, 40, 48, 3)
    assert levels(clip) == pytest.approx([0, 0, 0, 0], abs=TOL)


def test_corrupt_file_raises_data_error(tmp_path, corrupt_video):
    path = corrupt_video(tmp_path / "bad.mp4")
    with pytest.raises(DataError) as info:
        decode_sampled(path, 4, 1, 10, None)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_empty_file_raises_data_error(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="empty.mp4"):
        decode_sampled(path, 4, 1, 10, None)


def test_missing_file_raises_data_error(tmp_path):
    path = tmp_path / "nowhere" / "missing.mp4"
    with pytest.raises(DataError) as info:
        decode_sampled(path, 4, 1, 10, np.random.default_rng(0))
    assert str(path) in str(info.value)


def test_truncated_file_raises_or_decodes(tmp_path, make_gray_video):
    # A file cut in half must either decode what is there or raise DataError: never another exception.
    path = make_gray_video(tmp_path / "cut.mp4", 20, 10)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    try:
        clip = decode_sampled(path, 4, 1, 10, None)
    except DataError as exc:
        assert str(path) in str(exc)
    else:
        assert clip.shape == (4, 40, 48, 3)
