"""Temporal sampling arithmetic: clip length, start (centred / random), sampling instants."""
from __future__ import annotations

import numpy as np
import pytest

from vmb.data.sampling import clip_duration, clip_start, sample_times


def test_clip_duration():
    assert clip_duration(16, 5, 30) == pytest.approx(16 * 5 / 30)
    assert clip_duration(8, 2, 15) == pytest.approx(8 * 2 / 15)
    assert clip_duration(1, 1, 10) == pytest.approx(0.1)


def test_clip_start_centred_without_rng():
    assert clip_start(10.0, 2.0, None) == pytest.approx(4.0)
    assert clip_start(2.0, 2.0, None) == 0.0


def test_clip_start_random_within_slack():
    rng = np.random.default_rng(0)
    starts = [clip_start(10.0, 2.5, rng) for _ in range(2000)]
    assert min(starts) >= 0.0 and max(starts) <= 7.5
    # Uniform over the whole range, not stuck at one end.
    assert min(starts) < 0.5 and max(starts) > 7.0
    assert np.mean(starts) == pytest.approx(3.75, abs=0.3)


def test_clip_start_depends_only_on_generator_seed():
    a = [clip_start(10.0, 2.0, np.random.default_rng(5)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    assert clip_start(10.0, 2.0, np.random.default_rng(6)) != a[0]


@pytest.mark.parametrize("rng", [None, np.random.default_rng(1)])
def test_clip_start_zero_for_short_video(rng):
    assert clip_start(1.0, 2.0, rng) == 0.0
    assert clip_start(0.0, 2.0, rng) == 0.0


def test_short_video_does_not_consume_randomness():
    rng = np.random.default_rng(3)
    clip_start(1.0, 2.0, rng)
    assert rng.random() == np.random.default_rng(3).random()


def test_sample_times():
    times = sample_times(1.0, 4, 5, 30)
    assert times == pytest.approx([1.0, 1.0 + 5 / 30, 1.0 + 10 / 30, 1.0 + 15 / 30])
    assert len(sample_times(0.0, 16, 2, 15)) == 16


def test_sample_times_fit_in_clip():
    start, num_frames, rate, fps = 0.7, 16, 5, 30
    times = sample_times(start, num_frames, rate, fps)
    assert times[0] == start
    assert times[-1] < start + clip_duration(num_frames, rate, fps)
    assert np.allclose(np.diff(times), rate / fps)
