"""Video decoding: shapes, crops, which frames are decoded (with and without packet skipping, with B-frames),
short videos, damaged packets, unreadable files."""
from __future__ import annotations

import math

import av
import numpy as np
import pytest
import torch

from vmb.data import video
from vmb.data.prepare.formats import VideoFormat, add_video_stream
from vmb.data.sampling import clip_duration, clip_start, sample_times
from vmb.data.video import Box, decode_clip, full_frame
from vmb.errors import DataError

TOL = 3  # grey levels survive a qp-0 yuv420p round trip within +-2


def decode(path, num_frames: int, rate: int, fps: float, rng=None, geometry=None) -> torch.Tensor:
    """decode_clip with the dataset's timing (centred without `rng`) and the whole frame by default."""

    def timing(duration: float) -> list[float]:
        return sample_times(clip_start(duration, clip_duration(num_frames, rate, fps), rng), num_frames, rate, fps)

    return decode_clip(path, timing, geometry or full_frame())


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


def write_gray(path, num_frames: int, fps: int, fmt: VideoFormat, width: int = 48, height: int = 40):
    """Frame i is grey level 10 * i, encoded in `fmt` (lossless crf 0 keeps the levels)."""
    with av.open(str(path), "w") as container:
        stream = add_video_stream(container, fmt, width, height, fps)
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 10 * i, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


INTRA = VideoFormat(name="t_intra", short_side=None, fps=None, gop=1, crf=0, preset="ultrafast")
BFRAMES = VideoFormat(name="t_bframes", short_side=None, fps=None, gop=None, bframes=3, crf=0, preset="medium")


def test_shape_dtype_count(tiny_videos_dir):
    path = next((tiny_videos_dir / "train").rglob("*.mp4"))
    clip = decode(path, 8, 2, 10)
    assert clip.dtype == torch.uint8
    assert clip.shape == (8, 40, 48, 3)


@pytest.mark.parametrize("short_side,expected_hw", [(20, (20, 24)), (32, (32, 38)), (80, (80, 96))])
def test_full_frame_short_side_resize_landscape(tiny_videos_dir, short_side, expected_hw):
    path = next((tiny_videos_dir / "val").rglob("*.mp4"))
    assert decode(path, 4, 1, 10, geometry=full_frame(short_side)).shape == (4, *expected_hw, 3)


def test_full_frame_short_side_resize_portrait(tmp_path, make_video):
    path = make_video(tmp_path / "portrait.mp4", np.zeros((6, 48, 32, 3), dtype=np.uint8), 10)
    assert decode(path, 3, 1, 10, geometry=full_frame(16)).shape == (3, 24, 16, 3)


@pytest.mark.parametrize("num_frames,rate", [(8, 1), (4, 3), (5, 2)])
def test_centred_clip_decodes_the_right_frames(tmp_path, make_gray_video, num_frames, rate):
    n, fps = 20, 10
    clip = decode(make_gray_video(tmp_path / "gray.mp4", n, fps), num_frames, rate, fps)
    assert levels(clip) == pytest.approx([10 * i for i in expected_indices(n, fps, num_frames, rate, fps)], abs=TOL)


def test_target_fps_differs_from_file_fps(tmp_path, make_gray_video):
    # Sampling on a 20 fps grid from a 10 fps file shows every frame twice.
    got = levels(decode(make_gray_video(tmp_path / "gray.mp4", 20, 10), 8, 1, 20))
    assert got == pytest.approx([10 * i for i in expected_indices(20, 10, 8, 1, 20)], abs=TOL)
    assert got[0::2] == pytest.approx(got[1::2], abs=0.5)


def test_random_start_decodes_consecutive_frames(tmp_path, make_gray_video):
    path = make_gray_video(tmp_path / "gray.mp4", 24, 10)
    seen_starts = set()
    for seed in range(6):
        got = levels(decode(path, 6, 1, 10, np.random.default_rng(seed)))
        first = round(got[0] / 10)
        assert 0 <= first <= 24 - 6
        assert got == pytest.approx([10 * (first + i) for i in range(6)], abs=TOL)
        seen_starts.add(first)
    assert len(seen_starts) > 1  # the start really is random


@pytest.mark.parametrize("fmt", [INTRA, BFRAMES], ids=["all-intra", "b-frames"])
@pytest.mark.parametrize("rate", [1, 3])
def test_every_encoding_gives_the_frames_shown(tmp_path, fmt, rate):
    """All-intra streams take the packet-skipping path, B-frame streams the sequential one: same frames."""
    path = write_gray(tmp_path / "gray.mp4", 25, 10, fmt)
    for seed in range(4):
        rng = np.random.default_rng(seed)
        start = clip_start(2.5, clip_duration(5, rate, 10), np.random.default_rng(seed))
        expected = [10 * min(24, math.floor(t * 10 + 1e-6)) for t in sample_times(start, 5, rate, 10)]
        assert levels(decode(path, 5, rate, 10, rng)) == pytest.approx(expected, abs=TOL)


def test_all_intra_decodes_only_the_sampled_frames(tmp_path, monkeypatch):
    path = write_gray(tmp_path / "gray.mp4", 25, 10, INTRA)
    decoded = []
    real = video._decode
    monkeypatch.setattr(video, "_decode", lambda codec, packet: decoded.append(packet) or real(codec, packet))
    clip = decode(path, 4, 5, 10)  # 4 frames spread over the middle 2 s of a 2.5 s video: 2, 7, 12, 17
    assert levels(clip) == pytest.approx([20, 70, 120, 170], abs=TOL)
    assert len(decoded) == 4


def test_gop_stream_decodes_from_the_keyframe_only(tmp_path, monkeypatch):
    gop8 = VideoFormat(name="t_gop8", short_side=None, fps=None, gop=8, crf=0, preset="ultrafast")
    path = write_gray(tmp_path / "gray.mp4", 24, 10, gop8)
    decoded = []
    real = video._decode
    monkeypatch.setattr(video, "_decode", lambda codec, packet: decoded.append(packet) or real(codec, packet))
    clip = decode_clip(path, lambda duration: [1.9], full_frame())  # frame 19: keyframe 16, then 17, 18, 19
    assert levels(clip) == pytest.approx([190], abs=TOL)
    assert len(decoded) == 4


def test_same_rng_seed_same_clip(tiny_videos_dir):
    path = next((tiny_videos_dir / "train").rglob("*.mp4"))
    a = decode(path, 4, 2, 10, np.random.default_rng(11), geometry=full_frame(36))
    b = decode(path, 4, 2, 10, np.random.default_rng(11), geometry=full_frame(36))
    assert torch.equal(a, b)


def test_short_video_holds_last_frame(tmp_path, make_gray_video):
    path = make_gray_video(tmp_path / "short.mp4", 5, 10)
    for rng in (None, np.random.default_rng(0)):
        clip = decode(path, 8, 1, 10, rng)
        assert levels(clip) == pytest.approx([0, 10, 20, 30, 40, 40, 40, 40], abs=TOL)


def test_single_frame_video(tmp_path, make_gray_video):
    clip = decode(make_gray_video(tmp_path / "one.mp4", 1, 10), 4, 2, 10)
    assert clip.shape == (4, 40, 48, 3)
    assert levels(clip) == pytest.approx([0, 0, 0, 0], abs=TOL)


def gradient_frames(num_frames: int, height: int = 72, width: int = 96) -> np.ndarray:
    """A smooth colour gradient, so that resampling filters agree closely."""
    y, x = np.mgrid[0:height, 0:width]
    frame = np.stack([x * 255 / width, y * 255 / height, (x + y) * 255 / (width + height)], -1).astype(np.uint8)
    return np.repeat(frame[None], num_frames, 0)


@pytest.mark.parametrize("box,out", [(Box(10, 6, 40, 40), (32, 32)), (Box(11, 7, 33, 21), (33, 21)),
                                     (Box(0, 0, 96, 72), (48, 36))])
def test_crop_and_resize_match_a_plain_rgb_reference(tmp_path, make_video, box, out):
    frames = gradient_frames(3)
    path = make_video(tmp_path / "grad.mp4", frames, 10)
    clip = decode_clip(path, lambda duration: [0.0], lambda w, h: (box, out))
    assert clip.shape == (1, out[1], out[0], 3)
    region = torch.from_numpy(frames[0, box.y:box.y + box.h, box.x:box.x + box.w]).permute(2, 0, 1)[None].float()
    reference = torch.nn.functional.interpolate(region, size=(out[1], out[0]), mode="bilinear", antialias=True)
    difference = (clip[0].float() - reference[0].permute(1, 2, 0)).abs()
    # 4:2:0 chroma, an even-aligned corner (at most 1 px) and swscale's filter vs torch's: a few levels.
    assert difference.mean() < 3.0


def _damage_packet(path, index: int) -> None:
    """Overwrite the middle of video packet `index` with garbage."""
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
        position, size = packets[index].pos, packets[index].size
    data = bytearray(path.read_bytes())
    data[position + 4:position + size] = np.random.default_rng(0).integers(0, 256, size - 4, np.uint8).tobytes()
    path.write_bytes(bytes(data))


def test_damaged_packet_mid_stream_keeps_the_other_frames(tmp_path):
    path = write_gray(tmp_path / "gray.mp4", 20, 10, INTRA)
    _damage_packet(path, 10)
    got = levels(decode_clip(path, lambda duration: [0.5, 0.9, 1.0, 1.1, 1.5], full_frame()))
    assert [got[0], got[1], got[3], got[4]] == pytest.approx([50, 90, 110, 150], abs=TOL)


def test_corrupt_file_raises_data_error(tmp_path, corrupt_video):
    path = corrupt_video(tmp_path / "bad.mp4")
    with pytest.raises(DataError) as info:
        decode(path, 4, 1, 10)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_empty_file_raises_data_error(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="empty.mp4"):
        decode(path, 4, 1, 10)


def test_missing_file_raises_data_error(tmp_path):
    path = tmp_path / "nowhere" / "missing.mp4"
    with pytest.raises(DataError) as info:
        decode(path, 4, 1, 10, np.random.default_rng(0))
    assert str(path) in str(info.value)


def test_truncated_file_decodes_what_is_there(tmp_path):
    path = write_gray(tmp_path / "cut.mkv", 20, 10, VideoFormat(name="t", short_side=None, fps=None, gop=1,
                                                                  crf=0, preset="ultrafast", container="mkv"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # mkv puts its index at the end: the first half still plays
    clip = decode(path, 4, 1, 10, None)
    assert clip.shape == (4, 40, 48, 3)
