"""Video decoding with torchcodec: the same contract as `vmb.data.video.decode_clip`, on the CPU or on NVDEC.

`decode_clip` (DATA.DECODING_BACKEND torchcodec) and `batch_decoder_cuda` (torchcodec_cuda) give the frames
shown at `timing(duration)` (the last frame whose pts <= the instant; instants before the first frame show
the first frame, instants past the end hold the last one), cut to `geometry(width, height)`'s box and resized
bilinearly (antialiased) to its output size, as uint8 (T, H, W, 3) tensors on the decoding device.

Seek mode: "approximate": duration, frame count and frame rate come from the container header, not from a scan
of every packet when a file is opened ("exact"). On constant-frame-rate files with a correct header, as VMB's
prepared clips are, both choose the same frames; "approximate" could pick wrong frames only on variable-frame-rate
sources with misleading headers. The measurement is in docs/DATA.md ("Design measurements").

Damaged data: FFmpeg conceals what it can, as with PyAV; an error that torchcodec reports fails the whole
clip (DataError; in training the dataset then draws another video), where PyAV's backend would repeat the
previous frame for that instant.

CUDA (`batch_decoder_cuda`, DATA.DECODING_BACKEND torchcodec_cuda): frames are decoded by NVDEC into the
memory of the training process's own GPU, cropped and resized there, and stay there: the batch goes to the
training loop without touching host memory (vmb.data.device_loader runs this in a thread of the training
process, one batch ahead; never in data-loader workers, which cannot use CUDA). A failure is told apart: a CUDA
out-of-memory error propagates as is; a file that fails on NVDEC but decodes on the CPU is a GPU failure
(DeviceDecodeError, which stops the run); only a file that fails on the CPU too is a damaged video (DataError,
replaced and counted).
"""
from __future__ import annotations

import os
import re
from typing import Sequence

import torch
from torchcodec.decoders import VideoDecoder, VideoStreamMetadata

from vmb.data.video import BatchDecoder, ClipRequest, Geometry, Timing, crop_resize, gpu_failure_or_damaged
from vmb.errors import ConfigError, DataError

SEEK_MODE = "approximate"
# As in vmb.data.video: an instant up to 1 us before a frame's pts shows that frame. Sums of the sampling
# step land a hair short of frame boundaries (3 * 0.3 s = 0.8999999999999999 s), where torchcodec would
# show the frame before.
_EPS = 1e-6
# Instants past the end are moved this far before the end of the stream (the last frame's end), where the
# last frame is still shown: torchcodec refuses instants at or after the end.
_END_MARGIN_S = 1e-6
# torchcodec's messages start with "Function, /path/to/Source.cpp:LINE, "; the rest is what happened.
_SOURCE_PREFIX = re.compile(r"^.*?\.cpp:\d+, ")


def decode_clip(path: str | os.PathLike, timing: Timing, geometry: Geometry) -> torch.Tensor:
    """The frames shown at `timing(duration)`, cut to `geometry(width, height)`, decoded on the CPU.

    Returns:
        uint8 tensor of shape (T, H, W, 3), (W, H) the geometry's output size.

    Raises:
        DataError: the file cannot be opened or a frame of the clip cannot be decoded.
    """
    try:
        return _decode(path, timing, geometry, torch.device("cpu"))
    except _DecodeFailed as failed:
        raise DataError(f"{path}: cannot decode video (torchcodec: {failed})") from None


def batch_decoder_cuda(device: torch.device) -> BatchDecoder:
    """The batch decoder of DATA.DECODING_BACKEND torchcodec_cuda: each clip decoded by NVDEC on `device`, cropped
    and resized there; the frames stay on `device` (module docstring for errors).

    Raises:
        ConfigError: this process cannot use CUDA on `device`.
    """
    if device.type != "cuda" or torch.cuda._is_in_bad_fork() or not torch.cuda.is_available():
        raise ConfigError(f"DATA.DECODING_BACKEND torchcodec_cuda needs a CUDA GPU in the training process (asked "
                          f"for {device}); use torchcodec or pyav (see INSTALL.md)")

    def decode_batch(requests: Sequence[ClipRequest]) -> list[torch.Tensor | DataError]:
        results: list[torch.Tensor | DataError] = []
        for request in requests:
            try:
                results.append(_decode(request.path, request.timing, request.geometry, device))
            except DataError as exc:
                results.append(exc)
            except _DecodeFailed as failed:
                results.append(gpu_failure_or_damaged(request.path, "torchcodec_cuda", str(failed)))
        return results

    return decode_batch


class _DecodeFailed(Exception):
    """torchcodec could not open or decode the file (the message: its first line, without the C++ location)."""


def _decode(path: str | os.PathLike, timing: Timing, geometry: Geometry, device: torch.device) -> torch.Tensor:
    """Decode the clip's frames on `device` and cut them to the geometry (on the same device).

    Raises:
        DataError: the stream has no duration.
        _DecodeFailed: torchcodec failed (CUDA out of memory is not caught: it propagates).
        ConfigError: torchcodec fell back to the CPU for a CUDA device.
    """
    try:
        decoder = VideoDecoder(str(path), seek_mode=SEEK_MODE, dimension_order="NHWC", num_ffmpeg_threads=1,
                               device=str(device))
        metadata = decoder.metadata
        if not metadata.duration_seconds or not metadata.end_stream_seconds:
            raise DataError(f"{path}: the video stream has no duration")
        frames = decoder.get_frames_played_at(seconds=_instants(metadata, timing(metadata.duration_seconds))).data
    except torch.OutOfMemoryError:
        raise
    except (RuntimeError, ValueError, OSError) as exc:
        raise _DecodeFailed(_message(exc)) from None
    if device.type != "cpu" and decoder.cpu_fallback:
        raise ConfigError(f"DATA.DECODING_BACKEND torchcodec_cuda: torchcodec decoded {path} on the CPU, not "
                          f"with NVDEC ({decoder.cpu_fallback}); check the driver's NVDEC library (libnvcuvid) "
                          "or use torchcodec")
    box, out_size = geometry(frames.shape[2], frames.shape[1])
    return crop_resize(frames, box, out_size)


def _instants(metadata: VideoStreamMetadata, times: list[float]) -> list[float]:
    """Stream times of the clip's instants (given from the stream's start), kept between its first frame's pts
    and just before its end, where the first and the last frame are shown."""
    first, end = metadata.begin_stream_seconds, metadata.end_stream_seconds
    return [min(max(first + t + _EPS, first), end - _END_MARGIN_S) for t in times]


def _message(exc: Exception) -> str:
    """The first line of torchcodec's error message, without its C++ source location."""
    lines = str(exc).strip().splitlines()
    return _SOURCE_PREFIX.sub("", lines[0]) if lines else type(exc).__name__
