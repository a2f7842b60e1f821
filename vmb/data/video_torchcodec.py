"""Video decoding with torchcodec: the same contract as `vmb.data.video.decode_clip`, on the CPU or on NVDEC.

`decode_clip` (DATA.DECODING_BACKEND torchcodec) and `decode_clip_cuda` (torchcodec_cuda) return the frames
shown at `timing(duration)` (the last frame whose pts <= the instant; instants before the first frame show
the first frame, instants past the end hold the last one), cut to `geometry(width, height)`'s box and resized
bilinearly (antialiased) to its output size, as uint8 (T, H, W, 3) CPU tensors.

Seek mode: "approximate". It reads duration, frame count and frame rate from the container header instead
of scanning every packet when the file is opened ("exact"). Measured on 10 s 340x256 30 fps clips, 40
random 16-frame clips (stride 5), CPU time on the project's 2-core machine: both modes chose the same frames,
prepared (all-intra) and default-GOP with B-frames; opening costs 2.0 ms median in "approximate" and 3.0 ms
in "exact" (B-frames: 2.5 vs 3.0 ms), while getting the frames costs the same (9.7 vs 9.6 ms prepared, 97
vs 92 ms with B-frames, within noise). Whole clips with the dataset's crop (prepared): 13.3 ms
("approximate"), 13.0 ms ("exact"), 17.6 ms (PyAV), medians of 5 x 20 clips on a loaded machine, so the
scan's 1 ms is below that noise. "exact" buys nothing on constant-frame-rate files whose header is right,
which VMB's prepared clips are (its own encoder, 30 fps), and costs a scan of every file for every clip;
"approximate" could pick wrong frames only on variable-frame-rate sources with misleading headers.

Damaged data: FFmpeg conceals what it can, as with PyAV; an error that torchcodec reports fails the whole
clip (DataError; in training the dataset then draws another video), where PyAV's backend would repeat the
previous frame for that instant.

CUDA (`decode_clip_cuda`): frames are decoded by NVDEC into GPU memory, cropped and resized there, and only
the output clip is copied back, so the dataset's augmentations, collation and pinned-memory transfer see the
same CPU tensors as with the other backends. A CUDA context belongs to one process, and DataLoader workers are
forked from the training process after it has initialised CUDA, where CUDA cannot be used again. So decode in
the main process: DATA_LOADER.NUM_WORKERS 0 (the training loop then waits for each clip's decoding).
Workers started with the "spawn" method would each own a CUDA context (and its memory) and could decode
too, but VMB's loader forks them; a forked worker gets a one-line ConfigError saying so.
"""
from __future__ import annotations

import os
import re

import torch
from torchcodec.decoders import VideoDecoder, VideoStreamMetadata

from vmb.data.video import Geometry, Timing, crop_resize
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
    return _decode(path, timing, geometry, device="cpu")


def decode_clip_cuda(path: str | os.PathLike, timing: Timing, geometry: Geometry) -> torch.Tensor:
    """As `decode_clip`, decoded, cropped and resized on the current CUDA device (NVDEC); returns a CPU tensor.

    Raises:
        ConfigError: CUDA is not available in this process (see the module docstring), or torchcodec decoded
            on the CPU instead of NVDEC.
        DataError: as `decode_clip`.
    """
    _require_cuda()
    return _decode(path, timing, geometry, device=f"cuda:{torch.cuda.current_device()}").cpu()


def _require_cuda() -> None:
    """A one-line ConfigError unless this process can use CUDA."""
    if torch.cuda._is_in_bad_fork():  # a forked DataLoader worker of a process that had initialised CUDA
        raise ConfigError("DATA.DECODING_BACKEND torchcodec_cuda cannot decode in forked data-loader workers "
                          "(CUDA was initialised before the fork); set DATA_LOADER.NUM_WORKERS 0")
    if not torch.cuda.is_available():
        raise ConfigError("DATA.DECODING_BACKEND torchcodec_cuda needs a CUDA GPU and torch is not using one; "
                          "use torchcodec or pyav (see INSTALL.md)")


def _decode(path: str | os.PathLike, timing: Timing, geometry: Geometry, device: str) -> torch.Tensor:
    """Decode the clip's frames on `device` and cut them to the geometry (on the same device)."""
    try:
        decoder = VideoDecoder(str(path), seek_mode=SEEK_MODE, dimension_order="NHWC", num_ffmpeg_threads=1,
                               device=device)
        metadata = decoder.metadata
        if not metadata.duration_seconds or not metadata.end_stream_seconds:
            raise DataError(f"{path}: the video stream has no duration")
        frames = decoder.get_frames_played_at(seconds=_instants(metadata, timing(metadata.duration_seconds))).data
    except (RuntimeError, ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot decode video (torchcodec: {_message(exc)})") from None
    if device != "cpu" and decoder.cpu_fallback:
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
