"""Video decoding with NVIDIA DALI on NVDEC (DATA.DECODING_BACKEND dali): a whole batch per pipeline run.

NEVER RUN ON A GPU YET: written from DALI's documentation of `fn.decoders.video` (DALI >= 2.0) on a machine without
one; its CUDA test (tests/data/test_backends.py, marked `cuda`) is skipped there, and `tools/system_check.py` runs
it first on a GPU machine.

`batch_decoder(device)` gives the `vmb.data.video.BatchDecoder` of one DALI pipeline on `device`: the files' bytes
and a list of frame indices per clip go in through `fn.external_source`, `fn.decoders.video(device="mixed",
frames=...)` decodes every clip of the batch in one run, and each clip's frames are copied, on the current CUDA
stream, into a torch tensor on the same GPU, where the clip's box is cut and resized: the frames never leave the
device. vmb.data.device_loader calls it from a thread of the training process one batch ahead, so the thread is the
prefetch; the pipeline's own prefetch queue is one batch deep (one batch fed per run).

Why DALI can reproduce VMB's sampling exactly: `frames` takes any list of frame indices per sample (any order,
repeats allowed). VMB draws the clip's instants itself (TARGET_FPS grid, start from its seeded generator), and on a
constant-frame-rate stream, where frame k has pts start + k / fps, the frame shown at instant t is frame
floor(t * fps), kept within [0, frames - 1] (the first frame before the start, the last one held past the end).
`start_frame`/`stride` alone could not express a TARGET_FPS grid that is not a whole number of frames apart, nor the
held last frame. So this backend accepts only constant-frame-rate streams (the prepared format: 30 fps, all-intra
H.264) and reads rate, frame count and duration from the container header with PyAV, as the PyAV backend does.

Errors: a file that cannot be opened or is not constant-frame-rate is a DataError of that clip (before its timing is
asked, as with PyAV). When a pipeline run fails, each clip's file is decoded on the CPU (vmb.data.video.
decodes_on_cpu): the damaged ones become DataErrors and the batch runs again without them; if none is damaged, the
GPU failed (DeviceDecodeError). A CUDA out-of-memory error propagates as is. A pipeline that cannot be built is a
ConfigError.
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import av
import numpy as np
import torch
from nvidia.dali import Pipeline, fn, pipeline_def, types
from nvidia.dali.plugin.pytorch import feed_ndarray

from vmb.data.video import (BatchDecoder, ClipRequest, DeviceDecodeError, crop_resize, decodes_on_cpu,
                            video_duration)
from vmb.errors import ConfigError, DataError

# As in vmb.data.video: an instant up to 1 us before a frame's start shows that frame.
_EPS = 1e-6
_pipelines: dict[tuple[int, int], Pipeline] = {}  # (CUDA device index, batch size) -> this process's built pipeline


def batch_decoder(device: torch.device) -> BatchDecoder:
    """The batch decoder of DATA.DECODING_BACKEND dali on `device` (module docstring).

    Raises:
        ConfigError: this process cannot use CUDA on `device`.
    """
    if device.type != "cuda" or torch.cuda._is_in_bad_fork() or not torch.cuda.is_available():
        raise ConfigError(f"DATA.DECODING_BACKEND dali needs a CUDA GPU in the training process (asked for "
                          f"{device}); use pyav or torchcodec")

    def decode_batch(requests: Sequence[ClipRequest]) -> list[torch.Tensor | DataError]:
        results: list = [None] * len(requests)
        planned = []  # (position, file bytes, frame indices) of the clips whose header is fine
        for position, request in enumerate(requests):
            try:
                fps, num_frames, duration = stream_timing(request.path)
                indices = frame_indices(request.timing(duration), fps, num_frames)
                planned.append((position, np.fromfile(request.path, dtype=np.uint8), indices))
            except DataError as exc:
                results[position] = exc
            except OSError as exc:
                results[position] = DataError(f"{request.path}: cannot read video ({exc.strerror})")
        while planned:
            try:
                decoded = _decode_frames(device, [encoded for _, encoded, _ in planned],
                                         [indices for _, _, indices in planned])
            except torch.OutOfMemoryError:
                raise
            except RuntimeError as exc:
                planned = _drop_damaged(requests, planned, results, _first_line(exc))
                continue
            for (position, _, _), frames in zip(planned, decoded):
                box, out_size = requests[position].geometry(frames.shape[2], frames.shape[1])
                results[position] = crop_resize(frames, box, out_size)
            break
        return results

    return decode_batch


def _drop_damaged(requests: Sequence[ClipRequest], planned: list, results: list, message: str) -> list:
    """After a failed pipeline run: mark the clips whose file fails on the CPU as DataErrors and return the others;
    raise DeviceDecodeError when every file decodes on the CPU (the GPU failed)."""
    kept = []
    for item in planned:
        path = requests[item[0]].path
        if decodes_on_cpu(path):
            kept.append(item)
        else:
            results[item[0]] = DataError(f"{path}: cannot decode video (DALI: {message})")
    if len(kept) == len(planned):
        raise DeviceDecodeError(f"{requests[planned[0][0]].path} and the rest of its batch: GPU decoding failed (DALI: "
                                f"{message}), yet every file decodes on the CPU: check the GPU and its driver's NVDEC "
                                "library (libnvcuvid), or use DATA.DECODING_BACKEND pyav")
    return kept


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


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _pipeline(device_index: int, batch_size: int) -> Pipeline:
    """This process's pipeline for batches of up to `batch_size` clips on GPU `device_index`, built on first use
    and cached only once built.

    Raises:
        ConfigError: DALI cannot build it (no NVDEC, a DALI without fn.decoders.video, ...).
    """
    key = (device_index, batch_size)
    if key not in _pipelines:
        try:
            pipeline = _clip_pipeline(batch_size=batch_size, device_id=device_index)
            pipeline.build()
        except RuntimeError as exc:
            raise ConfigError(f"DATA.DECODING_BACKEND dali: DALI cannot build its decoding pipeline on GPU "
                              f"{device_index} ({_first_line(exc)}); use torchcodec_cuda or pyav") from None
        _pipelines[key] = pipeline
    return _pipelines[key]


def _decode_frames(device: torch.device, encoded: list[np.ndarray], indices: list[list[int]]) -> list[torch.Tensor]:
    """Frames `indices[i]` of each encoded file `encoded[i]`, as uint8 (T, H, W, 3) tensors on `device`, copied on
    the current CUDA stream. One pipeline run for the whole list."""
    pipeline = _pipeline(device.index, _batch_capacity(len(encoded)))
    pipeline.feed_input("encoded", encoded)
    pipeline.feed_input("frames", [np.asarray(clip, dtype=np.int32) for clip in indices])
    (decoded,) = pipeline.run()
    stream = torch.cuda.current_stream(device)
    clips = []
    for sample in range(len(encoded)):
        frames = torch.empty(decoded[sample].shape(), dtype=torch.uint8, device=device)
        feed_ndarray(decoded[sample], frames, cuda_stream=stream)
        clips.append(frames)
    return clips


def _batch_capacity(clips: int) -> int:
    """The pipeline size for `clips` clips: the next power of two, so that retries of a smaller batch and the
    last, shorter batch reuse a pipeline instead of building one per size."""
    return 1 << max(0, clips - 1).bit_length()


@pipeline_def(num_threads=2, prefetch_queue_depth=1)  # one batch fed per run; DALI's default executor otherwise
def _clip_pipeline():
    """Encoded file bytes and per-clip frame indices in, each clip's decoded RGB frames (on the GPU) out."""
    encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
    indices = fn.external_source(name="frames", dtype=types.INT32, ndim=1)
    return fn.decoders.video(encoded, device="mixed", frames=indices)
