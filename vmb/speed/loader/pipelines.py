"""The loader study's pipelines: each turns (clip index, repetition) into one training clip.

Every pipeline except VMB's dataset gets its span from `Spans`: one generator seeded by (seed, clip, repetition)
draws the start, so all of them decode the same instants of the same clip. VMB's dataset draws its own span
(and crop) from its per-sample seeding, (RNG seed, epoch = repetition, index = clip), as it does in training.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import av
import numpy as np
import torch
import torch.nn.functional as F

from vmb.data.kinetics import ClipSpec, KineticsDataset
from vmb.data.sampling import clip_duration, clip_start, sample_times
from vmb.data.video import decode_clip, full_frame

_EPS = 1e-6
_END_MARGIN = 1e-3  # instants are kept this far before a clip's end (torchcodec refuses instants past it)

# Pipeline keys -> table labels, in table order.
PIPELINES = {
    "vmb_train": "VMB train (decode+sample+augment)",
    "vmb_train_torchcodec": "VMB train, DECODING_BACKEND torchcodec",
    "augment_device": "augment on device (CPU here)",
    "pyav_bound": "bare bound, PyAV (vmb decode_clip)",
    "pyav_naive": "naive PyAV",
    "torchcodec": "bare bound, torchcodec",
    "pytorchvideo": "PyTorchVideo 0.1.5 (pyav)",
}
# Pipelines that read the same spans from `Spans` (every one but VMB's dataset and the device augment).
SHARED_SPANS = ("pyav_bound", "pyav_naive", "torchcodec", "pytorchvideo")

ClipFn = Callable[[int, int], object]


@dataclass(frozen=True)
class Spans:
    """The shared random spans: instants of (clip, repetition) for a ClipSpec's temporal sampling."""

    spec: ClipSpec
    durations: tuple[float, ...]
    seed: int = 0

    @property
    def clip_seconds(self) -> float:
        return clip_duration(self.spec.num_frames, self.spec.sampling_rate, self.spec.target_fps)

    def times(self, clip: int, rep: int) -> list[float]:
        """The sampled instants (s) of clip `clip` at repetition `rep`; the same for every pipeline and format."""
        duration = self.durations[clip]
        rng = np.random.default_rng((self.seed, clip, rep))
        start = clip_start(duration, self.clip_seconds, rng)
        times = sample_times(start, self.spec.num_frames, self.spec.sampling_rate, self.spec.target_fps)
        return [min(t, duration - _END_MARGIN) for t in times]

    def geometry_rng(self, clip: int, rep: int) -> np.random.Generator:
        """Generator for the crop of PyTorchVideo's pipeline (independent of the span's)."""
        return np.random.default_rng((self.seed, clip, rep, 1))


def naive_pyav(path: str, times: list[float]) -> np.ndarray:
    """The straightforward PyAV way: seek to the keyframe before the span, decode every frame of it, convert
    to RGB the frame shown at each instant (the last one starting at or before it)."""
    out: list[np.ndarray] = []
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        container.seek(int(times[0] / stream.time_base) + (stream.start_time or 0), stream=stream, backward=True)
        previous = None
        for frame in container.decode(stream):
            while len(out) < len(times) and previous is not None and frame.time > times[len(out)] + _EPS:
                out.append(previous.to_ndarray(format="rgb24"))
            if len(out) == len(times):
                break
            previous = frame
        while len(out) < len(times):  # instants after the last frame
            out.append(previous.to_ndarray(format="rgb24"))
    return np.stack(out)


def torchcodec_clip(path: str, times: list[float]) -> torch.Tensor:
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(path, seek_mode="approximate", num_ffmpeg_threads=1)
    return decoder.get_frames_played_at(seconds=times).data


def pytorchvideo_clip(path: str, times: list[float], clip_seconds: float, spec: ClipSpec,
                      rng: np.random.Generator) -> torch.Tensor:
    """PyTorchVideo 0.1.5's Kinetics training input: EncodedVideo (PyAV) get_clip of the span, then, as its
    transforms do (written here in torch; pytorchvideo.transforms does not import on current torchvision):
    uniform temporal subsample, short-side scale to a random size in the jitter range + random crop (or a
    random resized crop when the spec has one), horizontal flip. Returns float (C, T, crop, crop)."""
    from pytorchvideo.data.encoded_video import EncodedVideo

    video = EncodedVideo.from_path(path, decode_audio=False, decoder="pyav")
    video._container.streams.video[0].codec_context.thread_count = 1  # one decoder thread, as every row
    try:
        frames = video.get_clip(times[0], times[0] + clip_seconds)["video"]  # float (C, T, H, W)
    finally:
        video.close()
    indices = torch.linspace(0, frames.shape[1] - 1, spec.num_frames).clamp(0, frames.shape[1] - 1).long()
    frames = torch.index_select(frames, 1, indices)
    size = spec.train_crop_size
    height, width = frames.shape[-2:]
    if spec.rrc_scale:
        top, left, h, w = _rrc_box(height, width, spec.rrc_scale, spec.rrc_ratio, rng)
        frames = F.interpolate(frames[..., top:top + h, left:left + w], size=(size, size), mode="bilinear",
                               align_corners=False)
    else:
        short = int(rng.integers(spec.train_jitter_scales[0], spec.train_jitter_scales[1] + 1))
        new_h, new_w = (short, int(math.floor(width / height * short))) if width >= height else \
            (int(math.floor(height / width * short)), short)
        frames = F.interpolate(frames, size=(new_h, new_w), mode="bilinear", align_corners=False)
        top, left = int(rng.integers(0, new_h - size + 1)), int(rng.integers(0, new_w - size + 1))
        frames = frames[..., top:top + size, left:left + size]
    return frames.flip(-1) if rng.random() < 0.5 else frames


def _rrc_box(height: int, width: int, scale, ratio, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """pytorchvideo.transforms.functional.random_resized_crop's box (log-uniform ratio, 10 tries)."""
    area = height * width
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


def make_fns(spec: ClipSpec, spans: Spans, paths: list[str], dataset: KineticsDataset,
             augment: Callable | None, record: Callable | None = None,
             torchcodec_dataset: KineticsDataset | None = None) -> dict[str, ClipFn]:
    """The study's pipelines over one format's clips: key -> fn(clip, rep). `record(pipeline, clip, rep, times)`,
    if given, sees the instants of every shared-span call; `torchcodec_dataset` is the same dataset with
    DATA.DECODING_BACKEND torchcodec."""

    def times(pipeline: str, clip: int, rep: int) -> list[float]:
        instants = spans.times(clip, rep)
        if record is not None:
            record(pipeline, clip, rep, instants)
        return instants

    fns: dict[str, ClipFn] = {
        "vmb_train": lambda clip, rep: dataset[(rep, clip)],
        "pyav_bound": lambda clip, rep: decode_clip(paths[clip], lambda _duration: times("pyav_bound", clip, rep),
                                                    full_frame()),
        "pyav_naive": lambda clip, rep: naive_pyav(paths[clip], times("pyav_naive", clip, rep)),
        "torchcodec": lambda clip, rep: torchcodec_clip(paths[clip], times("torchcodec", clip, rep)),
        "pytorchvideo": lambda clip, rep: pytorchvideo_clip(paths[clip], times("pytorchvideo", clip, rep),
                                                            spans.clip_seconds, spec, spans.geometry_rng(clip, rep)),
    }
    if torchcodec_dataset is not None:
        fns["vmb_train_torchcodec"] = lambda clip, rep: torchcodec_dataset[(rep, clip)]
    if augment is not None and (spec.rand_augment is not None or spec.erase_prob > 0):
        fns["augment_device"] = _augment_fn(dataset, augment, len(paths))
    return fns


def _augment_fn(dataset: KineticsDataset, augment: Callable, num_clips: int) -> ClipFn:
    """Device-side augmentation of one clip on the CPU, over the samples the dataset made and the parameters it
    drew for them (decoded on the first call, once per clip, so only the augmentation is timed)."""
    samples: list = []

    def run(clip: int, rep: int):
        if not samples:
            samples.extend((sample[0], sample[3]) for sample in (dataset[(0, index)] for index in range(num_clips)))
        frames, params = samples[clip]
        return augment(frames[None], params[None])

    return run
