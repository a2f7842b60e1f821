"""Video decoding with NVIDIA DALI on NVDEC (DATA.DECODING_BACKEND dali): the decode_clip contract, one clip a call.

NEVER RUN: written from DALI's documentation of `fn.decoders.video` (DALI >= 2.0) on a machine without a GPU;
its test (tests/data/test_backends.py, marked `cuda`) is skipped there. Run that test first on a GPU machine.

Why DALI can reproduce VMB's sampling exactly: `fn.decoders.video`'s `frames` argument takes any list of
frame indices per sample (any order, repeats allowed). VMB draws the clip's instants itself (TARGET_FPS grid,
start from its seeded generator), and on a constant-frame-rate stream, where frame k has pts start + k / fps,
the frame shown at instant t is frame floor(t * fps), kept within [0, frames - 1] (the first frame before
the start, the last one held past the end). `start_frame`/`stride` alone could not express a TARGET_FPS grid
that is not a whole number of frames apart, nor the held last frame. The per-sample crop box and resize are
applied with torch to the decoded frames on the GPU. So this backend accepts only constant-frame-rate
streams (the prepared format: 30 fps, all-intra H.264) and reads rate, frame count and duration from the
container header with PyAV, as the PyAV backend does.

Output: a uint8 (T, H, W, 3) CPU tensor, like the other backends (only the output clip is copied back),
so the dataset's augmentations and collation are unchanged. One pipeline (batch size 1) per process and
device, fed one clip at a time: this keeps the contract, but gives up DALI's batching; a batched DALI
loader would replace the dataset, not the decoder. CUDA use is as for torchcodec_cuda (see
vmb/data/video_torchcodec.py): decode in the main process, DATA_LOADER.NUM_WORKERS 0.
"""
from __future__ import annotations

import math
import os

import av
import numpy as np
import torch
from nvidia.dali import Pipeline, fn, pipeline_def, types
from nvidia.dali.plugin.pytorch import feed_ndarray

from vmb.data.video import Geometry, Timing, crop_resize, video_duration
from vmb.errors import ConfigError, DataError

# As in vmb.data.video: an instant up to 1 us before a frame's start shows that frame.
_EPS = 1e-6
_pipelines: dict[int, Pipeline] = {}  # CUDA device index -> this process's pipeline


def decode_clip(path: str | os.PathLike, timing: Timing, geometry: Geometry) -> torch.Tensor:
    """The frames shown at `timing(duration)`, cut to `geometry(width, height)`, decoded by DALI on NVDEC.

    Returns:
        uint8 CPU tensor of shape (T, H, W, 3), (W, H) the geometry's output size.

    Raises:
        ConfigError: CUDA is not available in this process.
        DataError: the file cannot be read, is not constant-frame-rate, or DALI cannot decode it.
    """
    if torch.cuda._is_in_bad_fork() or not torch.cuda.is_available():
        raise ConfigError("DATA.DECODING_BACKEND dali needs a CUDA GPU in the process that decodes; "
                          "set DATA_LOADER.NUM_WORKERS 0 on a GPU machine, or use pyav or torchcodec")
    fps, num_frames, duration = stream_timing(path)
    indices = frame_indices(timing(duration), fps, num_frames)
    try:
        encoded = np.fromfile(path, dtype=np.uint8)
        frames = _decode_frames(encoded, indices)
    except (OSError, RuntimeError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{path}: cannot decode video (DALI: {first_line})") from None
    box, out_size = geometry(frames.shape[2], frames.shape[1])
    return crop_resize(frames, box, out_size).cpu()


def stream_timing(path: str | os.PathLike) -> tuple[float, int, float]:
    """(frame rate, frame count, duration in s) of a constant-frame-rate video stream, from its header."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: no video stream")
            stream = container.streams.video[0]
            rate, average = stream.base_rate, stream.average_rate
            duration = video_duration(stream, container)
            frames = stream.frames
    except (av.FFmpegError, OSError) as exc:
        raise DataError(f"{path}: cannot open video ({type(exc).__name__}: {exc})") from None
    if not rate or rate != average:
        raise DataError(f"{path}: DATA.DECODING_BACKEND dali needs a constant frame rate (stream rate {rate}, "
                        f"average {average}); prepare the dataset (tools/prepare_kinetics20.py) or use pyav")
    return float(rate), frames or max(1, round(duration * float(rate))), duration


def frame_indices(times: list[float], fps: float, num_frames: int) -> list[int]:
    """Index of the frame shown at each instant (s from the stream's start) of a constant-rate stream."""
    return [min(num_frames - 1, max(0, math.floor(t * fps + _EPS))) for t in times]


def _decode_frames(encoded: np.ndarray, indices: list[int]) -> torch.Tensor:
    """Frames `indices` of the encoded file, as a uint8 (T, H, W, 3) tensor on the current CUDA device."""
    device = torch.cuda.current_device()
    if device not in _pipelines:
        _pipelines[device] = _clip_pipeline(device_id=device)
        _pipelines[device].build()
    pipeline = _pipelines[device]
    pipeline.feed_input("encoded", [encoded])
    pipeline.feed_input("frames", [np.asarray(indices, dtype=np.int32)])
    decoded = pipeline.run()[0][0]  # the only sample of the batch
    frames = torch.empty(decoded.shape(), dtype=torch.uint8, device=f"cuda:{device}")
    feed_ndarray(decoded, frames, cuda_stream=torch.cuda.current_stream(device))
    return frames


@pipeline_def(batch_size=1, num_threads=1, prefetch_queue_depth=1)
def _clip_pipeline():
    """Encoded file bytes and frame indices in, the decoded RGB frames (on the GPU) out."""
    encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
    indices = fn.external_source(name="frames", dtype=types.INT32, ndim=1)
    return fn.decoders.video(encoded, device="mixed", frames=indices)
