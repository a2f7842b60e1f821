"""TSN and TSM (vmb.models.tsn): segment consensus, the temporal shift, their layouts and their cost."""
from __future__ import annotations

import pytest
import torch

from vmb.models.info import gflops_per_view
from vmb.models.tsn import TSM, TSN, TemporalShift, temporal_shift

# fvcore GFLOPs of ResNet-50 on one 224 x 224 frame, from MMAction2's README tables (Kinetics-400, 224x224):
# TSM R50 1x1x8 32.88G for 8 frames (configs/recognition/tsm/README.md), TSN R50 102.7G for the 25 frames of its
# test view (configs/recognition/tsn/README.md): 4.11 and 4.108 per frame.
RESNET50_GFLOPS_PER_FRAME = 32.88 / 8


def test_tsn_is_the_mean_of_the_per_frame_resnet_logits():
    tsn = TSN(num_classes=5, dropout=0.4).eval()
    clips = torch.randn(2, 3, 2, 64, 64)
    with torch.no_grad():
        logits = tsn(clips)
        per_frame = torch.stack([tsn.resnet(clips[:, :, t]) for t in range(2)], dim=1)  # (N, T, classes)
    assert logits.shape == (2, 5)
    torch.testing.assert_close(logits, per_frame.mean(dim=1))


def test_tsm_takes_a_batch_of_clips_to_logits():
    model = TSM(num_classes=7, dropout=0.5, num_segments=2)
    assert model(torch.randn(2, 3, 2, 64, 64)).shape == (2, 7)  # training mode: dropout on
    with pytest.raises(ValueError, match="clips of 2 frames, got 3"):
        model(torch.randn(2, 3, 3, 64, 64))


def _numbered_frames(clips: int, segments: int, channels: int) -> torch.Tensor:
    """(clips * segments, channels, 2, 2) frames holding 1000 * clip + 100 * segment + channel + 1 (never 0)."""
    n, t, c = torch.meshgrid(torch.arange(clips), torch.arange(segments), torch.arange(channels), indexing="ij")
    values = (1000 * n + 100 * t + c + 1).float()
    return values[..., None, None].expand(-1, -1, -1, 2, 2).reshape(clips * segments, channels, 2, 2)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_shift_moves_an_eighth_of_the_channels_one_segment_each_way(layout):
    frames = _numbered_frames(clips=2, segments=4, channels=16).contiguous(memory_format=layout)  # fold = 2
    shifted = temporal_shift(frames, num_segments=4)
    assert shifted.is_contiguous(memory_format=layout)  # the layout of its input
    before, after = frames.view(2, 4, 16, 2, 2), shifted.view(2, 4, 16, 2, 2)  # (N, T, C, H, W)
    # channels 0-1 move one segment back: segment t holds t + 1's, the last holds zeros
    assert torch.equal(after[:, :3, :2], before[:, 1:, :2]) and not after[:, 3, :2].any()
    # channels 2-3 move one segment forward: segment t holds t - 1's, the first holds zeros
    assert torch.equal(after[:, 1:, 2:4], before[:, :3, 2:4]) and not after[:, 0, 2:4].any()
    # the other 3/4 of the channels stay; no value crosses from one clip to the other
    assert torch.equal(after[:, :, 4:], before[:, :, 4:])


def test_tsm_shifts_in_every_bottleneck_before_conv1_so_frames_see_their_neighbours():
    model = TSM(num_classes=5, dropout=0.5, num_segments=2).eval()
    blocks = [block for stage in (model.resnet.layer1, model.resnet.layer2, model.resnet.layer3,
                                  model.resnet.layer4) for block in stage]
    assert len(blocks) == 16 and all(isinstance(block.conv1, TemporalShift) for block in blocks)
    assert sum(isinstance(m, TemporalShift) for m in model.modules()) == 16  # the shortcut path is not shifted
    frames = torch.randn(2, 3, 64, 64)  # one clip of 2 segments
    changed = torch.cat((frames[:1], torch.randn(1, 3, 64, 64)))
    with torch.no_grad():
        assert not torch.allclose(model.resnet(frames)[0], model.resnet(changed)[0])  # segment 0 sees segment 1
        tsn = TSN(num_classes=5, dropout=0.4).eval()
        torch.testing.assert_close(tsn.resnet(frames)[0], tsn.resnet(changed)[0])  # TSN's frames do not


def test_channels_last_3d_makes_a_channels_last_model_with_the_same_logits():
    model, tsn = TSM(num_classes=5, dropout=0.5, num_segments=2).eval(), TSN(num_classes=5, dropout=0.4).eval()
    clips = torch.randn(2, 3, 2, 64, 64)
    with torch.no_grad():
        expected = model(clips), tsn(clips)
        for net in (model, tsn):  # what VMB does to a model and its clips on CUDA (vmb.engine.precision)
            net.to(torch.device("cpu"), memory_format=torch.channels_last_3d)
        assert model.resnet.conv1.weight.is_contiguous(memory_format=torch.channels_last)
        got = [net(clips.contiguous(memory_format=torch.channels_last_3d)) for net in (model, tsn)]
    for logits, reference in zip(got, expected):
        torch.testing.assert_close(logits, reference, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model_type", ["tsn", "tsm"])
def test_gflops_per_view_are_resnet50s_per_frame_times_the_segments(model_type):
    model = TSN(400, 0.4) if model_type == "tsn" else TSM(400, 0.5, num_segments=2)
    assert gflops_per_view(model, num_frames=2, crop_size=224) == pytest.approx(2 * RESNET50_GFLOPS_PER_FRAME,
                                                                                 rel=0.01)
