"""Multi-view test sampling: evenly spaced clip starts, PySlowFast's 3 crops, and the dataset's view stacks."""
from __future__ import annotations

import pytest
import torch

from vmb.data import transforms as T
from vmb.data.kinetics import ClipSpec, KineticsDataset
from vmb.data.sampling import clip_start, view_start

CLIP = ClipSpec(num_frames=4, sampling_rate=2, target_fps=10, train_jitter_scales=(32, 40), train_crop_size=32,
                test_crop_size=32)


def test_view_starts_are_evenly_spaced_from_start_to_end():
    # a 10 s video, 2 s clips: slack 8 s
    assert [view_start(10.0, 2.0, k, 5) for k in range(5)] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert [view_start(10.0, 2.0, k, 2) for k in range(2)] == [0.0, 8.0]


def test_one_view_is_the_validation_clip():
    assert view_start(10.0, 2.0, 0, 1) == clip_start(10.0, 2.0, None) == 4.0
    assert view_start(2.0, 0.8, 0, 1) == clip_start(2.0, 0.8, None)


def test_video_shorter_than_the_clip_starts_every_view_at_0():
    assert [view_start(1.0, 2.0, k, 3) for k in range(3)] == [0.0, 0.0, 0.0]


def boxes(width, height, num_crops):
    return [T.uniform_crop_geometry(224, i, num_crops)(width, height) for i in range(num_crops)]


def test_three_crops_landscape_left_centre_right():
    assert boxes(454, 256, 3) == [(T.Box(x, 0, 256, 256), (224, 224)) for x in (0, 99, 198)]


def test_three_crops_portrait_top_centre_bottom():
    assert boxes(256, 340, 3) == [(T.Box(0, y, 256, 256), (224, 224)) for y in (0, 42, 84)]


@pytest.mark.parametrize("width,height", [(454, 256), (256, 340), (48, 40), (64, 64)])
def test_one_crop_and_the_middle_of_three_are_the_validation_crop(width, height):
    centre = T.center_crop_geometry(224)(width, height)
    assert boxes(width, height, 1) == [centre]
    assert boxes(width, height, 3)[1] == centre


def test_view_stack_shape_order_and_determinism(tiny_videos_dir):
    data = KineticsDataset(tiny_videos_dir, "val", 4, CLIP, train=False, views=(2, 3))
    views, label, failures, augment = data[0, 2]
    assert views.shape == (6, 3, 4, 32, 32) and views.dtype == torch.uint8
    assert (label, failures, augment.numel()) == (1, 0, 0)  # val.csv: 2 videos of class 0, then class 1
    assert torch.equal(views, data[0, 2][0])  # no randomness in test mode
    # clip-major: views 0-2 are the first clip's crops (different places), views 3-5 the second clip's
    assert not torch.equal(views[0], views[1]) and not torch.equal(views[0], views[2])
    assert not torch.equal(views[1], views[4])


def test_one_by_one_view_is_exactly_the_validation_clip(tiny_videos_dir):
    val = KineticsDataset(tiny_videos_dir, "val", 4, CLIP, train=False)
    one = KineticsDataset(tiny_videos_dir, "val", 4, CLIP, train=False, views=(1, 1))
    three = KineticsDataset(tiny_videos_dir, "val", 4, CLIP, train=False, views=(1, 3))
    for index in range(len(val)):
        clip = val[0, index][0]
        assert torch.equal(one[0, index][0], clip[None])
        assert torch.equal(three[0, index][0][1], clip)  # the centre crop of three
