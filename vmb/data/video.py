"""Video decoding with PyAV: decode only the frames a clip shows, convert only the pixels it keeps.

A clip is described by two callables the dataset builds from its sampling and augmentation settings:

- `Timing`: video duration (s) -> ascending instants (s) to sample;
- `Geometry`: source (width, height) -> the source box to keep and the output (width, height).

`decode_clip` opens the file, asks both, and returns the frames shown at those instants, cropped to the box
and resized to the output size. What makes it fast:

- Packets are demuxed but only decoded when a sampled frame depends on them: everything since the last
  keyframe before a sampled frame. On the prepared format (all-intra) that is exactly the sampled frames;
  on streams with B-frames (frame reordering) every packet of the span is decoded.
- Only the sampled frames are converted to RGB, at their own size (swscale's unscaled YUV->RGB path, about
  0.1 ms a 454x256 frame); the crop and resize then run once for the whole clip in torch (uint8,
  antialiased bilinear). Asking swscale to scale (or converting a cropped YUV frame) costs about 10x more.

Corrupt packets are skipped: a sampled instant whose frame cannot be decoded shows the previous decoded
frame, and the clip fails only when fewer than `MIN_OWN_FRAMES` of its instants have their own frame.
Instants past the end of a short video show its last frame (held, as PySlowFast does).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import av
import numpy as np
import torch
import torch.nn.functional as F

from vmb.backends import BACKENDS
from vmb.errors import ConfigError, DataError, VMBError

# A clip fails when fewer than this fraction of its instants have their own decoded frame (the others
# repeat the previous frame because their packet was unreadable).
MIN_OWN_FRAMES = 0.5
_EPS = 1e-6


@dataclass(frozen=True)
class Box:
    """A rectangle of source pixels: left, top, width, height."""

    x: int
    y: int
    w: int
    h: int


Timing = Callable[[float], list[float]]
Geometry = Callable[[int, int], tuple[Box, tuple[int, int]]]


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) after scaling the short side to `short_side`, keeping the aspect ratio."""
    if width < height:
        return short_side, max(1, round(height * short_side / width))
    return max(1, round(width * short_side / height)), short_side


def full_frame(short_side: int | None = None) -> Geometry:
    """Geometry keeping the whole frame, scaled to `short_side` if given."""

    def geometry(width: int, height: int) -> tuple[Box, tuple[int, int]]:
        out = (width, height) if short_side is None else scaled_size(width, height, short_side)
        return Box(0, 0, width, height), out

    return geometry


Decoder = Callable[[str | os.PathLike, Timing, Geometry], torch.Tensor]


@dataclass(frozen=True)
class ClipRequest:
    """One clip to decode: the file, and the callables that choose its instants and its box (module docstring)."""

    path: Path
    timing: Timing
    geometry: Geometry


# A batch decoder decodes a list of clips at once and returns, per clip, its frames, uint8 (T, H, W, 3) on the
# decoder's device, or the DataError that names why that clip's file cannot be used (the others still decode).
# It calls each request's timing before its geometry, and a clip that fails does so where `decode_clip` would
# (before timing when the file cannot be opened, before geometry when its frames cannot be decoded), so that a
# dataset's per-clip random draws are the same whichever backend decodes.
BatchDecoder = Callable[[Sequence[ClipRequest]], "list[torch.Tensor | DataError]"]


def get_decoder(backend: str) -> Callable:
    """The registered function of DATA.DECODING_BACKEND `backend` (a one-line error if it cannot be used)."""
    import importlib

    if backend not in BACKENDS:
        raise ConfigError(f"DATA.DECODING_BACKEND {backend!r}: choose one of {', '.join(BACKENDS)}")
    module_name, function = BACKENDS[backend].entry.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"DATA.DECODING_BACKEND {backend}: cannot import it ({exc}); "
                          f'install it with pip install -e ".[{backend}]" (see INSTALL.md)') from None
    return getattr(module, function)


def per_clip(decode: Decoder) -> BatchDecoder:
    """A batch decoder that decodes the requests one after the other with `decode`."""

    def decode_batch(requests: Sequence[ClipRequest]) -> list[torch.Tensor | DataError]:
        results: list[torch.Tensor | DataError] = []
        for request in requests:
            try:
                results.append(decode(request.path, request.timing, request.geometry))
            except DataError as exc:
                results.append(exc)
        return results

    return decode_batch


def batch_decoder(backend: str, device: torch.device) -> BatchDecoder:
    """The batch decoder of DATA.DECODING_BACKEND `backend`, its frames on `device` (the CPU for host backends)."""
    function = get_decoder(backend)
    return function(device) if BACKENDS[backend].on_device else per_clip(function)


def check_decoding_device(backend: str, device: torch.device) -> None:
    """Refuse, with one line, an on-device backend for a process that trains on the CPU, before anything is
    decoded or logged. (Its other condition, DATA_LOADER.NUM_WORKERS 0, is checked when the config is loaded.)

    Raises:
        ConfigError: naming the keys to change.
    """
    if BACKENDS[backend].on_device and device.type != "cuda":
        raise ConfigError(f"DATA.DECODING_BACKEND {backend} decodes on a CUDA GPU, and this run trains on the "
                          f"{device.type} (NUM_GPUS 0, or no CUDA device visible); use pyav or torchcodec")


class DeviceDecodeError(VMBError):
    """A GPU failed to decode a file that decodes on the CPU: the GPU, its driver or the decoding library is at
    fault, not the data. Never counted as a damaged video: it stops the run."""


def decodes_on_cpu(path: str | os.PathLike) -> bool:
    """Whether every packet of `path`'s video stream decodes with PyAV (on one CPU thread) and some frame comes
    out: the test that tells a damaged file from a failing GPU after a GPU decoder failed on it."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return False
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            frames = 0
            for packet in container.demux(stream):
                frames += len(stream.codec_context.decode(packet))
            return frames > 0
    except (av.FFmpegError, OSError, ValueError):
        return False


def gpu_failure_or_damaged(path: str | os.PathLike, backend: str, message: str) -> DataError:
    """The DataError for a clip a GPU decoder failed on, if the file is damaged (it fails on the CPU too);
    raises DeviceDecodeError if the file decodes on the CPU."""
    if decodes_on_cpu(path):
        raise DeviceDecodeError(f"{path}: GPU decoding failed ({backend}: {message}), yet the file decodes on the "
                                "CPU: check the GPU and its driver's NVDEC library (libnvcuvid), or use DATA."
                                "DECODING_BACKEND pyav")
    return DataError(f"{path}: cannot decode video ({backend}: {message})")


def video_duration(stream: "av.video.stream.VideoStream", container: "av.container.InputContainer") -> float:
    """Duration of a video stream in seconds, from the stream, the container or the frame count."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    if stream.frames and stream.average_rate:
        return stream.frames / float(stream.average_rate)
    return 0.0


def decode_clip(path: str | os.PathLike, timing: Timing, geometry: Geometry) -> torch.Tensor:
    """The frames shown at `timing(duration)`, cut to `geometry(width, height)`.

    Returns:
        uint8 tensor of shape (T, H, W, 3), (W, H) the geometry's output size.

    Raises:
        DataError: the file cannot be opened, has no video stream, or too few of the clip's frames decode.
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1  # one decode thread per data-loader worker (one core each)
            times = timing(video_duration(stream, container))
            frames, own = _frames_at(container, stream, times)
            if own < MIN_OWN_FRAMES * len(times):
                raise DataError(f"{path}: only {own} of the clip's {len(times)} frames decode "
                                f"(minimum {MIN_OWN_FRAMES:.0%}); the file is damaged")
            box, out_size = geometry(frames[0].width, frames[0].height)
            converted: dict[int, np.ndarray] = {}  # a frame held for several instants is converted once
            for frame in frames:
                if id(frame) not in converted:
                    converted[id(frame)] = frame.to_ndarray(format="rgb24")
            rgb = torch.from_numpy(np.stack([converted[id(frame)] for frame in frames]))
    except DataError:
        raise
    except _NoFrame:
        raise DataError(f"{path}: no frame decodes; the file is damaged") from None
    except (av.FFmpegError, OSError, ValueError, IndexError) as exc:
        raise DataError(f"{path}: cannot decode video ({type(exc).__name__}: {exc})") from None
    return crop_resize(rgb, box, out_size)


class _NoFrame(Exception):
    """Not a single frame of the clip's span decodes."""


class _Reordered(Exception):
    """Packets arrive out of presentation order (B-frames): packets cannot be skipped."""


def _frames_at(container, stream, times: list[float]) -> tuple[list["av.VideoFrame"], int]:
    """The frame shown at each instant of `times`, and how many instants got their own frame."""
    time_base, start_pts = float(stream.time_base), stream.start_time or 0
    if times[0] > 0:
        container.seek(start_pts + int(times[0] / time_base), stream=stream, backward=True, any_frame=False)
    if not stream.codec_context.has_b_frames:
        try:
            return _frames_skipping(container, stream, times, time_base, start_pts)
        except _Reordered:
            container.seek(start_pts + max(0, int(times[0] / time_base)), stream=stream, backward=True,
                           any_frame=False)
            stream.codec_context.flush_buffers()
    return _frames_sequential(container, stream, times, time_base, start_pts)


def _decode(codec_context, packet) -> list["av.VideoFrame"]:
    """Frames out of one packet (None flushes the decoder); an unreadable packet gives none."""
    try:
        return codec_context.decode(packet)
    except av.FFmpegError:
        return []


def _demux(container, stream):
    """Packets with a timestamp; a demuxing error ends the stream there (decode what came before)."""
    iterator = container.demux(stream)
    while True:
        try:
            packet = next(iterator)
        except (StopIteration, av.FFmpegError):
            return
        if packet.pts is not None and packet.size:
            yield packet


def _finish(chosen: list, times: list[float], last, own: int) -> tuple[list, int]:
    """Fill instants past the last frame with it, and instants whose frame failed with the frame before
    (or, at the start, the first decoded one)."""
    if last is None:
        raise _NoFrame
    own += len(times) - len(chosen)  # instants past the end hold the last frame
    chosen.extend([last] * (len(times) - len(chosen)))
    first = next(f for f in chosen if f is not None)
    for i, frame in enumerate(chosen):
        if frame is None:
            chosen[i] = first if i == 0 or chosen[i - 1] is None else chosen[i - 1]
    return chosen, own


def _frames_skipping(container, stream, times, time_base, start_pts):
    """Decode only the packets the sampled frames depend on (streams without frame reordering)."""
    codec = stream.codec_context
    chosen: list = []  # frame per instant; None where that frame could not be decoded
    since_key: list = []  # packets since the last keyframe, not yet decoded
    previous, previous_time = None, -math.inf  # the last packet demuxed, shown until the next one starts
    frame, frame_pts = None, None  # the last decoded frame and its packet's pts
    for packet in _demux(container, stream):
        packet_time = (packet.pts - start_pts) * time_base
        if packet_time < previous_time:
            raise _Reordered
        while len(chosen) < len(times) and packet_time > times[len(chosen)] + _EPS:
            shown = packet if previous is None else previous  # before the first frame: the first frame
            if shown.pts != frame_pts:
                decoded = _decode_through(codec, since_key if shown is previous else [packet], shown.pts)
                since_key = [] if shown is previous else since_key
                if decoded is not None:
                    frame, frame_pts = decoded, shown.pts
            chosen.append(frame if frame_pts == shown.pts else None)
        if len(chosen) == len(times):
            break
        if packet.is_keyframe:
            since_key = []
        since_key.append(packet)
        previous, previous_time = packet, packet_time
    if len(chosen) < len(times) and previous is not None and previous.pts != frame_pts:  # hold the last frame
        decoded = _decode_through(codec, since_key, previous.pts)
        if decoded is not None:
            frame, frame_pts = decoded, previous.pts
        chosen.append(frame if frame_pts == previous.pts else None)
    return _finish(chosen, times, frame, sum(f is not None for f in chosen))


def _decode_through(codec, packets: list, pts: int):
    """Decode `packets` (from a keyframe, in order) and return the frame with `pts`, or None if it failed."""
    found = None
    for packet in packets:
        for frame in _decode(codec, packet):
            if frame.pts == pts:
                found = frame
    if found is None:  # a decoder with delay holds the frame back: drain it, then reset it
        for frame in _decode(codec, None):
            if frame.pts == pts:
                found = frame
        codec.flush_buffers()
    return found


def _frames_sequential(container, stream, times, time_base, start_pts):
    """Decode every packet from the seek point on (streams with frame reordering). An instant counts as
    having its own frame unless a packet failed to decode between its frame and the next one."""
    codec = stream.codec_context
    chosen: list = []
    previous, own, damaged = None, 0, False
    packets = _demux(container, stream)
    flushed = False
    while len(chosen) < len(times) and not flushed:
        packet = next(packets, None)
        flushed = packet is None
        try:
            frames = codec.decode(packet)
        except av.FFmpegError:
            frames, damaged = [], True
        for frame in frames:
            if frame.pts is None:
                continue
            frame_time = (frame.pts - start_pts) * time_base
            while len(chosen) < len(times) and frame_time > times[len(chosen)] + _EPS:
                chosen.append(frame if previous is None else previous)
                own += not damaged
            previous, damaged = frame, False
    return _finish(chosen, times, previous, own)


def crop_resize(frames: torch.Tensor, box: Box, out_size: tuple[int, int]) -> torch.Tensor:
    """`box` of uint8 (T, H, W, 3) `frames` on any device, resized to `out_size` (width, height): bilinear,
    antialiased. On the CPU torch resizes uint8 channels-last images directly (within one grey level of the
    float32 path, and faster: docs/DATA.md, "Design measurements"); on a GPU the resize goes through float32."""
    region = frames[:, box.y:box.y + box.h, box.x:box.x + box.w]
    out_w, out_h = out_size
    if (box.w, box.h) == (out_w, out_h):
        return region.contiguous()
    images = region.permute(0, 3, 1, 2)  # (T, 3, h, w) viewing the channels-last pixels
    if images.device.type != "cpu":
        images = images.float()
    resized = F.interpolate(images, size=(out_h, out_w), mode="bilinear", align_corners=False, antialias=True)
    if resized.dtype != torch.uint8:
        resized = resized.round_().clamp_(0, 255).to(torch.uint8)
    return resized.permute(0, 2, 3, 1).contiguous()
