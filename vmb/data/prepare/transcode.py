"""Re-encode one source clip to a prepared format (`vmb.data.prepare.formats.PREPARED` for Kinetics20).

The source is decoded robustly and frame by frame, so memory stays small whatever its length:

- packets are demuxed and decoded one at a time; a packet that fails to decode is counted and skipped, and a
  demuxing error (a cut or garbled container) ends the video after what was read;
- frames without a timestamp, or whose timestamp does not increase, are dropped (counted);
- each frame is scaled with swscale (bicubic, one thread) so that the *upright* short side is `short_side`
  (both sides even), then turned upright if the stream carries a rotation (display matrix);
- the output has a constant frame rate: for each instant k / fps from the stream's start to the end of its
  last frame, it shows the frame shown at that instant (repeating or dropping source frames as needed);
- the clip is written under a temporary name in the output folder and renamed into place when complete.

The rules that decide which sources are skipped, and why, are in data/kinetics20/README.md.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

import av
import numpy as np
from av.video.frame import PictureType
from av.video.reformatter import Interpolation

from vmb.data.prepare.formats import VideoFormat, add_video_stream
from vmb.files import temp_name

# webm and mkv store times in whole milliseconds: a frame that starts up to 1 ms after an output instant
# counts as shown at it.
TIME_TOLERANCE = Fraction(1, 1000)
# A video whose decoded frames end this much before the duration its container declares is "truncated".
TRUNCATION_SLACK_S = 0.5
# Intervals between frame timestamps that differ by more than this fraction (and by more than one tick of the
# file's clock, which is rounding) mark a variable frame rate.
VFR_SPREAD = 0.1
SCALING = Interpolation.BICUBIC

Item = TypeVar("Item")


class SourceError(Exception):
    """A source that gives no clip: `reason` says which rule skipped it, `detail` what was found."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclasses.dataclass
class ClipStats:
    """What transcoding one source found and wrote."""

    codec: str = ""
    width: int = 0  # the source's stored frame size (before rotation)
    height: int = 0
    rotation: int = 0  # degrees counterclockwise the source's frames were turned to be upright
    source_frames: int = 0  # decoded frames used
    source_seconds: float = 0.0  # from the stream's start to the end of its last decoded frame
    frames: int = 0  # frames written
    bad_packets: int = 0  # packets that failed to decode (skipped)
    dropped_frames: int = 0  # frames without an increasing timestamp (skipped)
    truncated: bool = False  # demuxing stopped on an error, or the frames end well before the declared duration
    min_interval: int | None = None  # shortest and longest time between consecutive frames, in clock ticks
    max_interval: int | None = None

    def flags(self) -> list[str]:
        """The repairs and oddities of this source, as counted in the prepare summary."""
        checks = {
            "variable frame rate": self.min_interval is not None
            and self.max_interval - self.min_interval > max(1, VFR_SPREAD * self.min_interval),
            "rotated": self.rotation != 0,
            "odd frame size": self.width % 2 == 1 or self.height % 2 == 1,
            "undecodable packets": self.bad_packets > 0,
            "dropped frames": self.dropped_frames > 0,
            "truncated": self.truncated,
        }
        return [name for name, found in checks.items() if found]


def temp_path(output: Path) -> Path:
    """Where `output` is written until complete (hidden, in the same folder, named after this process)."""
    return temp_name(output)


def transcode(source: Path, output: Path, fmt: VideoFormat, min_frames: int, min_seconds: float) -> ClipStats:
    """Re-encode the first video stream of `source` to `output` in `fmt` (no audio).

    Raises:
        SourceError: the source is empty, cannot be opened, has no video stream, no decodable frame, or fewer
            than `min_frames` frames or `min_seconds` seconds; no output is left behind.
    """
    if fmt.fps is None or fmt.pix_fmt != "yuv420p":
        raise ValueError(f"format {fmt.name}: transcode needs a constant frame rate and yuv420p")
    if os.path.getsize(source) == 0:
        raise SourceError("empty", "zero-byte file")
    try:
        container = av.open(str(source))
    except av.FFmpegError as exc:
        raise SourceError("unreadable", getattr(exc, "strerror", None) or str(exc)) from None
    with container:
        if not container.streams.video:
            raise SourceError("no video stream", f"{len(container.streams.audio)} audio stream(s) only")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise SourceError("undecodable", "this FFmpeg build has no decoder for its video codec")
        stream.codec_context.thread_count = 1
        stats = ClipStats(codec=stream.codec_context.codec.canonical_name)
        timeline = _timeline(_decode(container, stream, stats), stream, Fraction(1, fmt.fps), stats)
        frames = constant_rate(timeline, fmt.fps)
        first = next(frames, None)
        if first is None:
            raise SourceError("undecodable", f"no frame decodes ({stats.bad_packets} bad packets)")
        stats.width, stats.height = first.width, first.height
        stats.rotation = 90 * (round(first.rotation / 90) % 4)
        tmp = temp_path(output)
        try:
            stats.frames = _encode(itertools.chain([first], frames), tmp, fmt, stats.rotation // 90)
            _check_length(stats, min_frames, min_seconds)
            declared = _declared_seconds(container, stream)
            stats.truncated |= declared is not None and stats.source_seconds < declared - TRUNCATION_SLACK_S
            os.replace(tmp, output)
        finally:
            tmp.unlink(missing_ok=True)
    return stats


def constant_rate(timeline: Iterable[tuple[Fraction, Item]], fps: int) -> Iterator[Item]:
    """Resample a timeline to `fps`: for each instant k / fps from 0 to the end of the timeline, the item shown.

    `timeline` gives (end, item) in order: each item is shown from the end of the one before (from the start
    for the first) until `end` seconds, and counts as shown at an instant up to TIME_TOLERANCE before that.
    """
    k = 0
    for end, item in timeline:
        while Fraction(k, fps) < end - TIME_TOLERANCE:
            yield item
            k += 1


def _decode(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
            stats: ClipStats) -> Iterator[av.VideoFrame]:
    """Frames of `stream`, demuxed and decoded packet by packet (see the module docstring)."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.FFmpegError:
            stats.truncated = True
            packet = None  # flush the decoder, then stop
        try:
            frames = stream.codec_context.decode(packet)
        except av.FFmpegError:
            stats.bad_packets += 1
            frames = []
        yield from frames
        if packet is None:
            return


def _timeline(frames: Iterable[av.VideoFrame], stream: av.video.stream.VideoStream, default_duration: Fraction,
              stats: ClipStats) -> Iterator[tuple[Fraction, av.VideoFrame]]:
    """(end, frame) for each frame with an increasing timestamp, in seconds from the stream's start.

    A frame ends where the next begins; the last one lasts its own duration, else the last interval between
    frames, else `default_duration`.
    """
    time_base = stream.time_base
    origin = stream.start_time
    previous, previous_pts, ticks = None, 0, None
    for frame in frames:
        if frame.pts is None or (previous is not None and frame.pts <= previous_pts):
            stats.dropped_frames += 1
            continue
        if origin is None:
            origin = frame.pts
        if previous is not None:
            ticks = frame.pts - previous_pts
            stats.min_interval = ticks if stats.min_interval is None else min(stats.min_interval, ticks)
            stats.max_interval = ticks if stats.max_interval is None else max(stats.max_interval, ticks)
            yield (frame.pts - origin) * time_base, previous
        previous, previous_pts = frame, frame.pts
        stats.source_frames += 1
    if previous is not None:
        ticks = previous.duration or ticks  # its own duration, else the last interval between frames
        duration = ticks * time_base if ticks else default_duration
        end = (previous_pts - origin) * time_base + duration
        stats.source_seconds = float(end)
        yield end, previous


def _encode(frames: Iterable[av.VideoFrame], path: Path, fmt: VideoFormat, quarter_turns: int) -> int:
    """Write `frames` (source frames, one per output instant) to `path` in `fmt`; return how many were written.

    Sizes come from the first frame; a source frame repeated at consecutive instants is converted once.
    """
    frames = iter(frames)
    first = next(frames)
    upright = (first.width, first.height) if quarter_turns % 2 == 0 else (first.height, first.width)
    width, height = fmt.output_size(*upright)
    scaled = (width, height) if quarter_turns % 2 == 0 else (height, width)
    count = 0
    with av.open(str(path), mode="w", format=fmt.container, options=fmt.container_options()) as container:
        stream = add_video_stream(container, fmt, width, height, fmt.fps)
        source, converted = None, None
        for frame in itertools.chain([first], frames):
            if frame is not source:
                source, converted = frame, _convert(frame, scaled, quarter_turns)
            converted.pts, converted.time_base = count, Fraction(1, fmt.fps)
            container.mux(stream.encode(converted))
            count += 1
        container.mux(stream.encode(None))
    return count


def _convert(frame: av.VideoFrame, size: tuple[int, int], quarter_turns: int) -> av.VideoFrame:
    """`frame` scaled to `size` in yuv420p, then turned `quarter_turns` times 90 degrees counterclockwise."""
    scaled = frame.reformat(*size, format="yuv420p", interpolation=SCALING, threads=1)
    if quarter_turns:
        scaled = rotate_yuv420p(scaled, quarter_turns)
    scaled.pict_type = PictureType.NONE  # the encoder chooses frame types, not the source's
    return scaled


def rotate_yuv420p(frame: av.VideoFrame, quarter_turns: int) -> av.VideoFrame:
    """A yuv420p frame (even sides) turned `quarter_turns` times 90 degrees counterclockwise, plane by plane."""
    width, height = frame.width, frame.height
    flat = frame.to_ndarray().reshape(-1)  # the Y plane, then U, then V, without padding
    luma, chroma = width * height, width * height // 4
    planes = (flat[:luma].reshape(height, width),
              flat[luma:luma + chroma].reshape(height // 2, width // 2),
              flat[luma + chroma:].reshape(height // 2, width // 2))
    turned = [np.rot90(plane, quarter_turns) for plane in planes]
    new_height, new_width = turned[0].shape
    data = np.concatenate([plane.reshape(-1) for plane in turned]).reshape(new_height * 3 // 2, new_width)
    return av.VideoFrame.from_ndarray(data, format="yuv420p")


def _check_length(stats: ClipStats, min_frames: int, min_seconds: float) -> None:
    if stats.source_frames < min_frames or stats.source_seconds < min_seconds:
        raise SourceError("too short", f"{stats.source_frames} frames, {stats.source_seconds:.2f} s decode "
                                       f"(minimum {min_frames} frames and {min_seconds:g} s)")


def _declared_seconds(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    """The duration the file declares for its video stream (else for the whole container), if any."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None
