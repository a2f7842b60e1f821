"""The loader study's clips: the same source frames encoded in every format under study, cached on disk.

Source frames are synthetic (`vmb.data.prepare.synthetic_render.render_video`) unless a folder of videos is
given, in which case each video is decoded and its frames are re-encoded into every format (source-like
included), so every format holds the same pictures. Each format's folder is a Kinetics-layout split
(`train.csv` + files), so `KineticsDataset` reads it as it reads the benchmark's data. `study_formats` picks the
formats under study.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import av
import numpy as np

from vmb.data.prepare.formats import CANDIDATES, PREPARED, VideoFormat, add_video_stream
from vmb.data.prepare.synthetic import SyntheticSpec
from vmb.data.prepare.synthetic_render import CLASS_NAMES, render_video
from vmb.errors import ConfigError, DataError

STAMP = "bench_clips.json"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov")


@dataclass(frozen=True)
class ClipSource:
    """Where the source frames come from: synthetic (`videos` None) or a folder of videos."""

    num_clips: int = 8
    width: int = 454
    height: int = 256
    seconds: float = 10.0
    fps: int = 30
    seed: int = 0
    videos: str | None = None

    def describe(self) -> str:
        """The clips in one line (the study's header)."""
        if self.videos:
            return f"{self.num_clips} clips decoded from {self.videos} and re-encoded in every format"
        return (f"{self.num_clips} SYNTHETIC clips (vmb.data.prepare.synthetic_render.render_video; real Kinetics is "
                f"not used), {self.width}x{self.height}, {self.fps} fps, {self.seconds:g} s")


@dataclass(frozen=True)
class EncodedSet:
    """One format's files: `paths[i]` is clip i; `data_dir` holds train.csv for KineticsDataset."""

    fmt: VideoFormat
    data_dir: pathlib.Path
    paths: tuple[pathlib.Path, ...]
    labels: tuple[int, ...]
    bytes_per_clip: float


def _source_videos(source: ClipSource) -> list[pathlib.Path]:
    folder = pathlib.Path(source.videos)
    if not folder.is_dir():
        raise DataError(f"--videos {folder}: not a folder")
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    if len(found) < source.num_clips:
        raise DataError(f"--videos {folder}: {len(found)} videos found, {source.num_clips} asked for (--clips)")
    return found[:source.num_clips]


def source_frames(source: ClipSource, index: int) -> tuple[np.ndarray, float, int]:
    """Clip `index`'s source frames (T, H, W, 3) uint8, their frame rate, and its label."""
    if source.videos is None:
        spec = SyntheticSpec(width=source.width, height=source.height, num_frames=round(source.seconds * source.fps),
                             fps=source.fps, seed=source.seed)
        label = index % len(CLASS_NAMES)
        rng = np.random.default_rng(np.random.SeedSequence([source.seed, 7, index]))
        return render_video(label, rng, spec), float(source.fps), label
    path = _source_videos(source)[index]
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or 30)
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    except (av.FFmpegError, OSError, IndexError) as exc:
        raise DataError(f"{path}: cannot decode ({type(exc).__name__}: {exc})") from None
    if len(frames) < 2:
        raise DataError(f"{path}: fewer than 2 frames")
    return np.stack(frames), rate, 0


def encode(path: pathlib.Path, frames: np.ndarray, rate: float, fmt: VideoFormat) -> None:
    """Encode `frames` (shown at `rate` frames/s) in `fmt`: scaled to its short side and resampled to its
    frame rate (nearest preceding frame) where the format sets them."""
    height, width = frames.shape[1:3]
    out_w, out_h = fmt.output_size(width, height)
    out_rate = fmt.fps or rate
    if fmt.fps is None or abs(fmt.fps - rate) < 1e-6:
        indices = range(len(frames))
    else:
        count = int(len(frames) / rate * fmt.fps)
        indices = [min(len(frames) - 1, int(i * rate / fmt.fps + 1e-6)) for i in range(count)]
    rate_q = Fraction(out_rate).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        stream = add_video_stream(container, fmt, out_w, out_h, rate_q)
        stream.codec_context.thread_count = 1
        for pts, index in enumerate(indices):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[index]), format="rgb24")
            if (out_w, out_h) != (width, height):
                frame = frame.reformat(width=out_w, height=out_h)
            frame.pts, frame.time_base = pts, 1 / rate_q
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def prepare_clips(source: ClipSource, formats: list[VideoFormat], work_dir: pathlib.Path,
                  log: Callable[[str], None] = print) -> tuple[dict[str, EncodedSet], list[float]]:
    """Every clip encoded in every format under `work_dir/<format name>/`, reusing earlier encodings made from
    the same source and settings. Returns the sets by format name and each clip's duration in seconds (from
    the source frames, the same for every format)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    stamp_path = work_dir / STAMP
    stamp = json.loads(stamp_path.read_text()) if stamp_path.is_file() else {}
    wanted = {"source": dataclasses.asdict(source), "formats": {f.name: f.as_dict() for f in formats}}
    old_formats = stamp.get("formats", {}) if stamp.get("source") == wanted["source"] else {}
    paths = {f.name: [work_dir / f.name / f"clip{i:03d}.{f.container}" for i in range(source.num_clips)]
             for f in formats}
    todo = [f for f in formats
            if old_formats.get(f.name) != f.as_dict() or not all(p.is_file() for p in paths[f.name])]
    durations, labels = stamp.get("durations"), stamp.get("labels")
    if todo or durations is None or len(durations) != source.num_clips:
        log(f"encoding {source.num_clips} clips into {', '.join(f.name for f in todo) or 'no new format'} "
            f"in {work_dir} (once; reused with the same --work-dir)")
        stamp_path.unlink(missing_ok=True)
        durations, labels = [], []
        for f in todo:
            (work_dir / f.name).mkdir(exist_ok=True)
        for index in range(source.num_clips):
            frames, rate, label = source_frames(source, index)
            durations.append(len(frames) / rate)
            labels.append(label)
            for f in todo:
                encode(paths[f.name][index], frames, rate, f)
            del frames
    kept = {name: spec for name, spec in old_formats.items() if name not in wanted["formats"]}
    stamp_path.write_text(json.dumps({"source": wanted["source"], "formats": {**kept, **wanted["formats"]},
                                      "durations": durations, "labels": labels}, indent=1))
    sets = {}
    for f in formats:
        data_dir = work_dir / f.name
        (data_dir / "train.csv").write_text("".join(f"{p.name} {label}\n" for p, label in zip(paths[f.name], labels)))
        sets[f.name] = EncodedSet(f, data_dir, tuple(paths[f.name]), tuple(labels),
                                  float(np.mean([p.stat().st_size for p in paths[f.name]])))
    return sets, durations


def study_formats(names: list[str] | None) -> tuple[list[VideoFormat], str]:
    """The formats to study (default: every candidate) and the name of the one equal to formats.PREPARED
    (PREPARED itself is added when no candidate has its settings)."""
    same = [f.name for f in CANDIDATES.values() if dataclasses.replace(f, name=PREPARED.name) == PREPARED]
    prepared_name = same[0] if same else PREPARED.name
    available = {**CANDIDATES, PREPARED.name: PREPARED}
    if names is None:
        chosen = list(CANDIDATES.values()) + ([] if same else [PREPARED])
    else:
        unknown = [n for n in names if n not in available]
        if unknown:
            raise ConfigError(f"--formats {', '.join(unknown)}: choose from {', '.join(available)}")
        chosen = [available[prepared_name if n == PREPARED.name else n] for n in dict.fromkeys(names)]
    return chosen, prepared_name
