"""Video decoding with PyAV: seek to a clip, decode only its span, convert only the frames it uses."""
from __future__ import annotations

import os

import av
import numpy as np
import torch

from vmb.data.sampling import clip_duration, clip_start, sample_times
from vmb.errors import DataError


def _scaled_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    if short_side is None:
        return width, height
    if width < height:
        return short_side, max(1, round(height * short_side / width))
    return max(1, round(width * short_side / height)), short_side


def video_duration(stream: "av.video.stream.VideoStream", container: "av.container.InputContainer") -> float:
    """Duration of a video stream in seconds, from the stream, the container or the frame count."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    if stream.frames and stream.average_rate:
        return stream.frames / float(stream.average_rate)
    return 0.0


def decode_sampled(path: str | os.PathLike, num_frames: int, sampling_rate: int, target_fps: float,
                   rng: np.random.Generator | None, short_side: int | None = None) -> torch.Tensor:
    """Decode one clip of `num_frames` instants spaced `sampling_rate` frames apart at `target_fps`.

    The clip starts uniformly at random with `rng` (training) or in the middle of the video without
    (validation). Instants past the end of a short video repeat its last frame.

    Returns:
        uint8 tensor of shape (T, H, W, 3), H or W equal to `short_side` when given.

    Raises:
        DataError: the file cannot be opened, has no video stream or yields no frame.
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: no video stream")
            stream = container.streams.video[0]
            duration = video_duration(stream, container)
            start = clip_start(duration, clip_duration(num_frames, sampling_rate, target_fps), rng)
            times = sample_times(start, num_frames, sampling_rate, target_fps)
            frames = _decode_at(container, stream, times, short_side)
    except DataError:
        raise
    except (av.FFmpegError, OSError, ValueError, IndexError) as exc:
        raise DataError(f"{path}: cannot decode video ({type(exc).__name__}: {exc})") from None
    if not frames:
        raise DataError(f"{path}: no frame decoded")
    return torch.from_numpy(np.stack(frames))


def _decode_at(container, stream, times: list[float], short_side: int | None) -> list[np.ndarray]:
    """RGB arrays of the frames shown at each instant of `times` (ascending)."""
    time_base = float(stream.time_base)
    start_pts = stream.start_time or 0
    if times[0] > 0:
        container.seek(start_pts + int(times[0] / time_base), stream=stream, backward=True, any_frame=False)
    width, height = _scaled_size(stream.codec_context.width, stream.codec_context.height, short_side)
    chosen: list[np.ndarray] = []
    previous, previous_rgb = None, None
    pending = 0  # index into `times` of the next instant to fill
    for frame in container.decode(stream):
        if frame.pts is None:
            continue
        frame_time = (frame.pts - start_pts) * time_base
        # `previous` is the frame shown at every pending instant before this frame starts.
        while pending < len(times) and frame_time > times[pending] + 1e-6:
            if previous is None:  # the instant precedes the first frame: show the first frame
                previous = frame
            if previous_rgb is None:
                previous_rgb = previous.to_ndarray(format="rgb24", width=width, height=height)
            chosen.append(previous_rgb)
            pending += 1
        if pending == len(times):
            break
        if frame is not previous:
            previous, previous_rgb = frame, None
    if pending < len(times) and previous is not None:
        if previous_rgb is None:
            previous_rgb = previous.to_ndarray(format="rgb24", width=width, height=height)
        chosen.extend(previous_rgb for _ in range(len(times) - pending))
    return chosen
