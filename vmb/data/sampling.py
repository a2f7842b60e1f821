"""Temporal sampling: where a clip starts and which decoded frame shows each sampled instant.

Pure functions of their arguments (plus an explicit generator), so they are easy to test. Times are in
seconds; a clip is NUM_FRAMES instants spaced SAMPLING_RATE frames apart on a TARGET_FPS grid, whatever the
file's own frame rate.
"""
from __future__ import annotations

import numpy as np


def clip_duration(num_frames: int, sampling_rate: int, target_fps: float) -> float:
    """Seconds covered by a clip: from its first instant to one step past its last."""
    return num_frames * sampling_rate / target_fps


def clip_start(video_duration: float, clip_seconds: float, rng: np.random.Generator | None) -> float:
    """Start time of a clip: uniform over the valid range with `rng` (training), centred without (validation)."""
    slack = max(0.0, video_duration - clip_seconds)
    if rng is None:
        return slack / 2.0
    return float(rng.uniform(0.0, slack)) if slack > 0 else 0.0


def sample_times(start: float, num_frames: int, sampling_rate: int, target_fps: float) -> list[float]:
    """The clip's `num_frames` sampling instants in seconds."""
    step = sampling_rate / target_fps
    return [start + i * step for i in range(num_frames)]


def view_start(video_duration: float, clip_seconds: float, index: int, num_views: int) -> float:
    """Start time of test clip `index` of `num_views`, uniformly spaced (PySlowFast's multi-view test): the
    first at 0, the last ending at the video's end; one view is centred, as `clip_start` without a generator.
    A video shorter than the clip starts every view at 0."""
    slack = max(0.0, video_duration - clip_seconds)
    if num_views == 1:
        return slack / 2.0
    return slack * index / (num_views - 1)
