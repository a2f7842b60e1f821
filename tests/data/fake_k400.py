"""A fake Kinetics-400 copy in the CVDF layout, for the tests of tools/prepare_kinetics20.py.

`write_fake_k400(root)` writes ``annotations/{train,val}.csv`` and small clips (64x48 to 160x120, 0.5-3 s)
for four of the Kinetics20 classes and three other Kinetics-400 classes, in several codecs and containers
(H.264 in mp4 and mkv, VP9 in webm, AV1 in mp4 when PyAV has an AV1 encoder), flat under ``train/`` or in
per-class folders, and the broken inputs the preparation must survive. Each `FakeClip` says what the
preparation should do with it: `expect` is "ok" or the reason it is skipped, `flags` the repairs it needs.
"""
from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# The first AV1 encoder this PyAV build has (decoding goes through libdav1d), or None.
AV1_ENCODER = next((name for name in ("libsvtav1", "libaom-av1", "librav1e") if name in av.codecs_available), None)

# Frame times (ms) of the variable-frame-rate clip: bursts and gaps; frame i has grey level VFR_LEVEL_STEP * i.
VFR_TIMES_MS = (0, 40, 80, 200, 233, 266, 300, 500, 533, 566, 600, 700, 800, 900, 1000, 1033, 1066, 1100, 1200,
                1300)
VFR_LEVEL_STEP = 12
ROTATION_DEGREES = 90  # counterclockwise, as PyAV's VideoStream.set_display_rotation and VideoFrame.rotation


@dataclasses.dataclass(frozen=True)
class FakeClip:
    """One annotated clip of the fake copy and what preparing it should give."""

    split: str
    label: str
    youtube_id: str
    kind: str  # how the file is made: a key of _WRITERS, or "missing" (annotated, no file)
    suffix: str = ".mp4"
    size: tuple[int, int] = (64, 48)  # stored width, height
    seconds: float = 2.0
    fps: int = 15
    folder: str = "flat"  # "flat": <split>/<file>; "class": <split>/<label>/<file>
    expect: str = "ok"  # "ok", or the skip reason
    flags: tuple[str, ...] = ()  # repairs the prepared clip must report (at least these)

    @property
    def clip_id(self) -> str:
        return f"{self.youtube_id}_{0:06d}_{10:06d}"

    @property
    def relative_path(self) -> str:
        folder = self.split if self.folder == "flat" else f"{self.split}/{self.label}"
        return f"{folder}/{self.clip_id}{self.suffix}"


_IN_K20 = (
    FakeClip("train", "abseiling", "h264mp4-001", "h264"),
    FakeClip("train", "abseiling", "h264mp4-002", "h264", size=(160, 120), seconds=3.0, fps=25),
    FakeClip("train", "abseiling", "vp9webm-001", "vp9", ".webm", size=(80, 60)),
    FakeClip("train", "abseiling", "av1mp4--001", "av1"),
    FakeClip("train", "air drumming", "h264mkv-001", "h264", ".mkv", size=(96, 72)),
    FakeClip("train", "air drumming", "vfrmp4--001", "vfr", flags=("variable frame rate",)),
    FakeClip("train", "air drumming", "rotated-001", "rotated", flags=("rotated",)),
    FakeClip("train", "air drumming", "oddsize-001", "vp9", ".webm", size=(101, 75), flags=("odd frame size",)),
    FakeClip("train", "applauding", "corrupt-001", "corrupt", flags=("undecodable packets",)),
    FakeClip("train", "applauding", "truncmkv-001", "truncated", ".mkv", seconds=3.0, flags=("truncated",)),
    FakeClip("train", "applauding", "truncmp4-001", "truncated", expect="unreadable"),
    FakeClip("train", "applauding", "empty---001", "empty", expect="empty"),
    FakeClip("train", "applauding", "audio---001", "audio", expect="no video stream"),
    FakeClip("train", "applauding", "short---001", "h264", seconds=0.5, expect="too short"),
    FakeClip("train", "applauding", "missing-001", "missing", expect="missing"),
    FakeClip("train", "bee keeping", "h264mp4-003", "h264", folder="class"),
    FakeClip("val", "abseiling", "h264mp4-101", "h264", folder="class"),
    FakeClip("val", "air drumming", "vp9webm-101", "vp9", ".webm"),
    FakeClip("val", "bee keeping", "h264mkv-101", "h264", ".mkv", folder="class"),
)
# Other Kinetics-400 classes: annotated and present, but not in Kinetics20.
_OTHER = (
    FakeClip("train", "zumba", "zumba---001", "h264", expect="not in Kinetics20"),
    FakeClip("train", "passing American football (in game)", "football001", "h264", expect="not in Kinetics20"),
    FakeClip("val", "yoga", "yoga----101", "h264", expect="not in Kinetics20"),
)
FAKE_CLIPS: tuple[FakeClip, ...] = _IN_K20 + _OTHER

# Rows the preparation must count: a repeated id (kept once) and malformed rows (per split).
DUPLICATE_ROWS = 1
MALFORMED_ROWS = {"train": 1, "val": 1}


def fake_clips(with_av1: bool = AV1_ENCODER is not None) -> tuple[FakeClip, ...]:
    """The clips `write_fake_k400` writes (the AV1 clip only if an AV1 encoder exists)."""
    return tuple(clip for clip in FAKE_CLIPS if with_av1 or clip.kind != "av1")


def write_fake_k400(root: Path, clips: tuple[FakeClip, ...] | None = None) -> tuple[FakeClip, ...]:
    """Write the fake copy (by default with all of `fake_clips()`) into `root`; return its clips."""
    clips = fake_clips() if clips is None else clips
    for index, clip in enumerate(clips):
        if clip.kind != "missing":
            write_clip(root, clip, seed=index)
    (root / "train" / "README.txt").write_text("not a video\n")
    (root / "train" / ".hidden.mp4").write_bytes(b"")
    write_annotations(root, clips)
    return clips


def write_clip(root: Path, clip: FakeClip, seed: int) -> Path:
    """Write one clip's file under `root` (its content drawn from `seed`); return its path."""
    path = root / clip.relative_path
    path.parent.mkdir(parents=True, exist_ok=True)
    _WRITERS[clip.kind](path, clip, np.random.default_rng(seed))
    return path


def write_annotations(root: Path, clips: tuple[FakeClip, ...]) -> None:
    """annotations/train.csv with an extra column (is_cc), a repeated row and a malformed row; val.csv with its
    columns in another order and a row with too few fields. Labels with spaces are quoted, as in the CVDF copy."""
    def quoted(label: str) -> str:
        return f'"{label}"' if " " in label else label

    train = [f"{quoted(c.label)},{c.youtube_id},0,10,train,0" for c in clips if c.split == "train"]
    train.insert(3, train[0])  # the first row again: a duplicate id
    train.append("abseiling,badtime-001,zero,10,train,0")
    val = [f"{c.youtube_id},{quoted(c.label)},0,10,val" for c in clips if c.split == "val"]
    val.append("applauding,toofew-001")
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    header = {"train": "label,youtube_id,time_start,time_end,split,is_cc",
              "val": "youtube_id,label,time_start,time_end,split"}
    for split, rows in (("train", train), ("val", val)):
        (root / "annotations" / f"{split}.csv").write_text("\n".join([header[split], *rows]) + "\n")


def textured_frames(clip: FakeClip, rng: np.random.Generator) -> np.ndarray:
    """(T, H, W, 3) uint8: a random texture sliding right by 1 px per frame, with a white marker in the top-left
    corner (one sixteenth of the frame) that shows which way is up."""
    width, height = clip.size
    texture = rng.integers(40, 200, (height, width, 3), dtype=np.uint8)
    frames = np.stack([np.roll(texture, t, axis=1) for t in range(round(clip.seconds * clip.fps))])
    frames[:, : height // 4, : width // 4] = 255
    return frames


def encode(path: Path, codec: str, frames: np.ndarray, times: list[int], time_base: Fraction, rate: int,
           rotation: int = 0, options: dict | None = None) -> None:
    """Encode (T, H, W, 3) uint8 frames as yuv420p with presentation times `times` (in `time_base` units) and
    the nominal frame rate `rate`."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate, options=options or {})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.time_base = stream.codec_context.time_base = time_base
        if rotation:
            stream.set_display_rotation(rotation)
        for rgb, pts in zip(frames, times):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts, frame.time_base = pts, time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


_X264 = {"preset": "ultrafast", "g": "5", "bf": "0", "threads": "1"}
_VP9 = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "threads": "1"}


def _write_h264(path: Path, clip: FakeClip, rng: np.random.Generator, rotation: int = 0) -> None:
    frames = textured_frames(clip, rng)
    encode(path, "libx264", frames, list(range(len(frames))), Fraction(1, clip.fps), clip.fps,
           rotation=rotation, options=_X264)


def _write_vp9(path: Path, clip: FakeClip, rng: np.random.Generator) -> None:
    frames = textured_frames(clip, rng)
    encode(path, "libvpx-vp9", frames, list(range(len(frames))), Fraction(1, clip.fps), clip.fps, options=_VP9)


def _write_av1(path: Path, clip: FakeClip, rng: np.random.Generator) -> None:
    frames = textured_frames(clip, rng)
    options = {"preset": "12"} if AV1_ENCODER == "libsvtav1" else {}
    encode(path, AV1_ENCODER, frames, list(range(len(frames))), Fraction(1, clip.fps), clip.fps,
           options=options)


def _write_vfr(path: Path, clip: FakeClip, rng: np.random.Generator) -> None:
    """Flat grey frames (frame i at level VFR_LEVEL_STEP * i) at the irregular times VFR_TIMES_MS."""
    width, height = clip.size
    levels = VFR_LEVEL_STEP * np.arange(len(VFR_TIMES_MS), dtype=np.uint8)
    frames = np.broadcast_to(levels[:, None, None, None], (len(levels), height, width, 3)).copy()
    encode(path, "libx264", frames, list(VFR_TIMES_MS), Fraction(1, 1000), 30,
           options=dict(_X264, qp="0"))


def _write_rotated(path: Path, clip: FakeClip, rng: np.random.Generator) -> None:
    _write_h264(path, clip, rng, rotation=ROTATION_DEGREES)


def _write_corrupt(path: Path, clip: FakeClip, rng: np.random.Generator) -> None:
    """H.264 whose 13th and 14th packets are overwritten with random bytes (the container stays valid)."""
    _write_h264(path, clip, rng)
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(path.read_bytes())
    for pos, size in packets[12:14]:
        data[pos:pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _write_truncated(path: Path, clip: FakeClip, rng: np.random.Generator) -> None:
    """The first 70 % of a clip's bytes (an mp4 then lacks its index, which FFmpeg writes last)."""
    _write_h264(path, clip, rng)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 7 // 10])


def _write_empty(path: Path, clip: FakeClip, rng: np.random.Generator) -> None:
    path.write_bytes(b"")


def _write_audio(path: Path, clip: FakeClip, rng: np.random.Generator) -> None:
    """One second of AAC audio, no video stream."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for index in range(16):
            samples = rng.uniform(-0.1, 0.1, (1, 1024)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, index * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


_WRITERS = {"h264": _write_h264, "vp9": _write_vp9, "av1": _write_av1, "vfr": _write_vfr,
            "rotated": _write_rotated, "corrupt": _write_corrupt, "truncated": _write_truncated,
            "empty": _write_empty, "audio": _write_audio}
