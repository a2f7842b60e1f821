"""Decoding backends against PyAV (vmb.data.video.decode_clip): the same frames for the same timing and geometry.

Test videos show frame i as a grey ramp across the frame (0.75 levels per pixel left to right, 0.25 top to
bottom) brightened by STEP * i, so a decoded frame names its index: it is within STEP / 2 (mean absolute
difference) of the rendered frame i cut by the same geometry, and farther from every other one. Three checks
per clip, all on the mean absolute difference of each frame in grey levels:

- identity: both backends show, at every instant, the frame the instant shows (computed independently);
- backend vs PyAV below TOL = 3 (torchcodec on the CPU: worst case 2.5 over every case here): both decode
  the same H.264 pictures with FFmpeg, but PyAV cuts the box from the 4:2:0 planes with its corner moved to
  even coordinates (up to one pixel, up to 1 level on this ramp) and converts and resizes with swscale,
  whose resampling differs from torch's: PyAV's frames are up to 3.0 levels from the exactly cut and
  resized rendered frame, where the other backends crop exactly and resize with torch (antialiased bilinear);
- backend vs the rendered frame below REF_TOL = 1 (torchcodec: worst case 0.7 on the lossless and crf 10
  videos, the RGB -> YUV -> RGB round trip; 0.93 on the prepared format's crf 23): this catches a box that is off
  by 2 pixels or more, which the comparison with PyAV cannot. On the GPU the decoders convert YUV to RGB with
  their own kernels (NPP, DALI): CUDA_REF_TOL = 2 until a GPU run measures them.

The test videos: "intra" is lossless all-intra x264 (crf 0, which x264 writes as High 4:4:4 Intra: exact for the
CPU tests, but NVDEC cannot decode it); "prepared" is the benchmark's own prepared format (lossy all-intra, 4:2:0,
vmb.data.prepare.formats.PREPARED at the source size), and with "bframes" (crf 10, 4:2:0, B-frames) the formats the GPU
tests decode. The `cuda` tests need an NVIDIA GPU (and, for DALI, its wheel); they are skipped without one.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import sys
import types
from fractions import Fraction
from typing import Callable

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vmb.data import video_torchcodec as torchcodec_backend
from vmb.data.prepare.formats import PREPARED, VideoFormat, add_video_stream
from vmb.data.kinetics import ClipSpec, KineticsDataset
from vmb.data.sampling import clip_duration, clip_start, sample_times
from vmb.data.transforms import center_crop_geometry, jitter_crop_geometry, random_resized_crop_geometry
from vmb.backends import BACKENDS, Backend
from vmb.data.video import (Box, ClipRequest, DeviceDecodeError, decode_clip as pyav_decode_clip,
                            decodes_on_cpu, full_frame, get_decoder)
from vmb.errors import ConfigError, DataError

TOL = 3.0  # grey levels, mean absolute difference per frame (see the module docstring)
REF_TOL = 1.0
CUDA_REF_TOL = 2.0
STEP = 8  # grey levels between consecutive frames
WIDTH, HEIGHT, NUM_FRAMES = 64, 48, 24
# (format, frame rate): all-intra like the prepared format, and x264's default GOP with B-frames.
FORMATS = {
    "intra": (VideoFormat(name="test_intra", short_side=None, gop=1, tune="fastdecode", crf=0), 30),
    "prepared": (dataclasses.replace(PREPARED, name="test_prepared", short_side=None), 30),
    "bframes": (VideoFormat(name="test_bframes", short_side=None, gop=None, bframes=None, crf=10), 10),
}
GPU_FORMATS = ("prepared", "bframes")  # NVDEC decodes 4:2:0 lossy H.264 only (module docstring)
CUDA = pytest.mark.skipif(not torch.cuda.is_available(),
                          reason="needs an NVIDIA GPU (torch.cuda.is_available() is False)")


def module_available(name: str) -> bool:
    """Whether `name` can be imported (its parent packages too)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


TimingFactory = Callable[[np.random.Generator], Callable[[float], list[float]]]
GeometryFactory = Callable[[np.random.Generator], Callable[[int, int], tuple[Box, tuple[int, int]]]]


def ramp_frames() -> np.ndarray:
    """(NUM_FRAMES, HEIGHT, WIDTH, 3) uint8: frame i is the grey ramp plus STEP * i."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    ramp = 0.75 * x + 0.25 * y
    assert ramp.max() + STEP * (NUM_FRAMES - 1) <= 255
    levels = np.stack([ramp + STEP * i for i in range(NUM_FRAMES)])
    return np.repeat(np.round(levels)[..., None], 3, axis=-1).astype(np.uint8)


def encode(path, frames: np.ndarray, fmt: VideoFormat, fps: int):
    """Encode RGB `frames` with PyAV in `fmt` at `fps`; frame i has pts i / fps."""
    with av.open(str(path), mode="w") as container:
        stream = add_video_stream(container, fmt, frames.shape[2], frames.shape[1], fps)
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def reorders(path) -> bool:
    """Whether the file's packets come out of presentation order (B-frames)."""
    with av.open(str(path)) as container:
        pts = [packet.pts for packet in container.demux(video=0) if packet.size]
    return pts != sorted(pts)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict:
    """{format name: (path, fps)} of the ramp video encoded in each of FORMATS."""
    root, frames = tmp_path_factory.mktemp("backends"), ramp_frames()
    made = {name: (encode(root / f"{name}.mp4", frames, fmt, fps), fps) for name, (fmt, fps) in FORMATS.items()}
    assert reorders(made["bframes"][0]) and not reorders(made["intra"][0]) and not reorders(made["prepared"][0])
    return made


def h264_profile(path) -> str:
    """The H.264 profile of the file's video stream, as FFmpeg names it."""
    with av.open(str(path)) as container:
        return container.streams.video[0].codec_context.profile


def test_gpu_test_videos_are_what_nvdec_decodes(videos):
    """NVDEC decodes neither 4:4:4 nor lossless H.264: the GPU tests must not be fed the lossless CPU video."""
    assert "4:4:4" in h264_profile(videos["intra"][0])
    for name in GPU_FORMATS:
        assert "4:4:4" not in h264_profile(videos[name][0]) and FORMATS[name][0].crf > 0
        assert FORMATS[name][0].pix_fmt == "yuv420p"


def reference(frames: np.ndarray, box: Box, out_size: tuple[int, int]) -> torch.Tensor:
    """Rendered frames cut to `box` and resized to `out_size` in float32: (N, H, W, 3)."""
    region = torch.from_numpy(frames[:, box.y:box.y + box.h, box.x:box.x + box.w]).permute(0, 3, 1, 2).float()
    resized = F.interpolate(region, size=out_size[::-1], mode="bilinear", align_corners=False, antialias=True)
    return resized.permute(0, 2, 3, 1)


def shown_indices(clip: torch.Tensor, references: torch.Tensor) -> list[int]:
    """The rendered frame each decoded frame is: within STEP / 2 of it, farther from every other one."""
    found = []
    for frame in clip.float():
        distance = (references - frame).abs().mean(dim=(1, 2, 3))
        order = distance.argsort()
        assert distance[order[0]] < STEP / 2 < distance[order[1]], f"ambiguous frame: {distance.tolist()}"
        found.append(int(order[0]))
    return found


def frame_differences(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of each frame of two (T, H, W, 3) clips, in grey levels."""
    return (a.float() - b.float()).abs().mean(dim=(1, 2, 3))


def expected_indices(times: list[float], fps: int) -> list[int]:
    """Frame shown at each instant of a constant-rate video (computed independently of the decoders)."""
    return [min(NUM_FRAMES - 1, max(0, int(np.floor(t * fps + 1e-6)))) for t in times]


def decode_recorded(decoder, path, timing_factory: TimingFactory, geometry_factory: GeometryFactory, seed: int = 0):
    """Decode with a generator seeded with `seed`; return the clip and what the decoder saw and chose:
    {"duration", "times", "box", "size"}."""
    rng = np.random.default_rng(seed)
    timing, geometry, seen = timing_factory(rng), geometry_factory(rng), {}

    def recorded_timing(duration: float) -> list[float]:
        seen["duration"], seen["times"] = duration, timing(duration)
        return seen["times"]

    def recorded_geometry(width: int, height: int):
        seen["box"], seen["size"] = geometry(width, height)
        return seen["box"], seen["size"]

    clip = decoder(path, recorded_timing, recorded_geometry)
    return clip, seen


def dataset_timing(num_frames: int, rate: int, target_fps: float, centred: bool = False) -> TimingFactory:
    """The dataset's timing: `num_frames` instants `rate` steps apart on a `target_fps` grid, random start."""

    def factory(rng: np.random.Generator):
        return lambda duration: sample_times(
            clip_start(duration, clip_duration(num_frames, rate, target_fps), None if centred else rng),
            num_frames, rate, target_fps)

    return factory


TIMINGS: dict[str, TimingFactory] = {
    "random_start_grid": dataset_timing(6, 2, 30),
    "centred_on_frame_boundaries": dataset_timing(6, 3, 10, centred=True),  # instants at frame starts
    "faster_grid_repeats_frames": dataset_timing(8, 1, 60),
    "before_first_frame": lambda rng: lambda duration: [-1.0, -1e-3, 0.0, 1e-3],
    "past_the_end": lambda rng: lambda duration: [duration - 0.02, duration - 1e-3, duration, duration + 0.5,
                                                  duration + 10.0],
}
GEOMETRIES: dict[str, GeometryFactory] = {
    "full_frame": lambda rng: full_frame(),
    "full_frame_scaled": lambda rng: full_frame(short_side=24),
    "crop_downscale_odd_box": lambda rng: lambda w, h: (Box(9, 5, 37, 29), (24, 20)),
    "crop_upscale": lambda rng: lambda w, h: (Box(10, 6, 20, 16), (40, 32)),
    "crop_no_resize": lambda rng: lambda w, h: (Box(7, 3, 30, 22), (30, 22)),
    "center_crop": lambda rng: center_crop_geometry(32),
    "jitter_crop": lambda rng: jitter_crop_geometry((40, 56), 32, rng),
    "random_resized_crop": lambda rng: random_resized_crop_geometry(32, (0.2, 1.0), (0.75, 4 / 3), rng),
}


def assert_same_frames(decoder, videos, fmt: str, timing: TimingFactory, geometry: GeometryFactory,
                       ref_tol: float = REF_TOL) -> None:
    """`decoder` and PyAV give the same frames, each the rendered frame its instant shows (three seeds)."""
    path, fps = videos[fmt]
    for seed in range(3):
        expected, seen_pyav = decode_recorded(pyav_decode_clip, path, timing, geometry, seed)
        got, seen = decode_recorded(decoder, path, timing, geometry, seed)
        assert seen == seen_pyav  # same duration, instants, box and output size
        assert got.dtype == torch.uint8 and got.device.type == "cpu"
        assert got.shape == expected.shape == (len(seen["times"]), seen["size"][1], seen["size"][0], 3)
        references = reference(ramp_frames(), seen["box"], seen["size"])
        indices = expected_indices(seen["times"], fps)
        assert shown_indices(got, references) == shown_indices(expected, references) == indices
        to_pyav, to_rendered = frame_differences(got, expected), frame_differences(got, references[indices])
        assert to_pyav.max() < TOL, f"mean abs difference to PyAV per frame: {to_pyav.tolist()}"
        assert to_rendered.max() < ref_tol, f"mean abs difference to the rendered frames: {to_rendered.tolist()}"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("timing", TIMINGS)
def test_torchcodec_same_frames_as_pyav_per_timing(videos, fmt, timing):
    assert_same_frames(torchcodec_backend.decode_clip, videos, fmt, TIMINGS[timing],
                       GEOMETRIES["crop_downscale_odd_box"])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_torchcodec_same_frames_as_pyav_per_geometry(videos, fmt, geometry):
    assert_same_frames(torchcodec_backend.decode_clip, videos, fmt, TIMINGS["random_start_grid"],
                       GEOMETRIES[geometry])


def test_backends_are_registered():
    assert get_decoder("torchcodec") is torchcodec_backend.decode_clip
    assert get_decoder("torchcodec_cuda") is torchcodec_backend.batch_decoder_cuda
    assert BACKENDS["dali"] == Backend("vmb.data.video_dali:batch_decoder", on_device=True)
    assert [name for name, backend in BACKENDS.items() if backend.on_device] == ["torchcodec_cuda", "dali"]


def write_audio_only(path):
    """An MP4 file with an AAC stream and no video."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=8000)
        for index in range(4):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, index * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("kind", ["missing", "random_bytes", "audio_only"])
def test_torchcodec_unreadable_file_is_one_line_data_error(tmp_path, corrupt_video, kind):
    path = tmp_path / f"{kind}.mp4"
    writers = {"missing": lambda path: path, "random_bytes": corrupt_video, "audio_only": write_audio_only}
    writers[kind](path)
    with pytest.raises(DataError) as info:
        torchcodec_backend.decode_clip(path, TIMINGS["before_first_frame"](None), full_frame())
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and ".cpp" not in message


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_torchcodec_cuda_without_cuda_is_one_line_config_error(device):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("checks the error given where CUDA is missing")
    with pytest.raises(ConfigError) as info:
        torchcodec_backend.batch_decoder_cuda(torch.device(device))
    assert "torchcodec_cuda" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.skipif(module_available("nvidia.dali"), reason="checks the error given where DALI is missing")
def test_dali_without_dali_tells_how_to_install():
    with pytest.raises(ConfigError) as info:
        get_decoder("dali")
    assert 'pip install -e ".[dali]"' in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("crop", ["jitter", "random_resized"])
def test_dataset_clips_with_torchcodec_match_pyav(tmp_path, videos, crop):
    """The dataset's own timing, geometries and augmentation draws give the same clips with either backend."""
    for split in ("train", "val"):
        (tmp_path / f"{split}.csv").write_text("".join(f"{path} {label}\n" for label, (path, _) in
                                                       enumerate(videos.values())))
    rrc = dict(rrc_scale=(0.2, 1.0), rrc_ratio=(0.75, 4 / 3)) if crop == "random_resized" else {}
    spec = dict(num_frames=4, sampling_rate=2, target_fps=30, train_jitter_scales=(40, 56), train_crop_size=32,
                test_crop_size=32, **rrc)
    for split, train in (("train", True), ("val", False)):
        pyav_set, torchcodec_set = (KineticsDataset(tmp_path, split, len(videos), ClipSpec(**spec, backend=name),
                                                    train=train, seed=3) for name in ("pyav", "torchcodec"))
        for key in ((epoch, index) for epoch in range(3) for index in range(len(videos))):
            (expected, label, failures, _), (got, got_label, got_failures, _) = pyav_set[key], torchcodec_set[key]
            assert (got_label, got_failures) == (label, failures) and got.shape == expected.shape
            to_pyav = frame_differences(got.permute(1, 2, 3, 0), expected.permute(1, 2, 3, 0))  # clips: C, T, H, W
            assert to_pyav.max() < TOL, f"{split} {key}: mean abs difference per frame {to_pyav.tolist()}"


def on_gpu(factory) -> Callable:
    """A one-clip decoder over the batch decoder `factory(cuda:0)` makes, checking that the frames come out on the
    GPU (they are then copied to the CPU for the comparison)."""
    decode_batch = factory(torch.device("cuda", 0))

    def decode(path, timing, geometry) -> torch.Tensor:
        (frames,) = decode_batch([ClipRequest(path, timing, geometry)])
        if isinstance(frames, DataError):
            raise frames
        assert frames.device == torch.device("cuda", 0)  # decoded frames stay on the device
        return frames.cpu()

    return decode


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("fmt", GPU_FORMATS)
@pytest.mark.parametrize("timing", TIMINGS)
@pytest.mark.parametrize("geometry", ["full_frame", "crop_downscale_odd_box", "random_resized_crop"])
def test_torchcodec_cuda_same_frames_as_pyav(videos, fmt, timing, geometry):
    assert_same_frames(on_gpu(torchcodec_backend.batch_decoder_cuda), videos, fmt, TIMINGS[timing],
                       GEOMETRIES[geometry], CUDA_REF_TOL)


DALI = pytest.mark.skipif(not (torch.cuda.is_available() and module_available("nvidia.dali")),
                          reason='needs an NVIDIA GPU and NVIDIA DALI (pip install -e ".[dali]")')


@pytest.mark.cuda
@DALI
@pytest.mark.parametrize("fmt", ["prepared"])  # constant frame rate, as DALI's backend requires
@pytest.mark.parametrize("timing", TIMINGS)
@pytest.mark.parametrize("geometry", ["full_frame", "crop_downscale_odd_box", "random_resized_crop"])
def test_dali_same_frames_as_pyav(videos, fmt, timing, geometry):
    from vmb.data.video_dali import batch_decoder

    assert_same_frames(on_gpu(batch_decoder), videos, fmt, TIMINGS[timing], GEOMETRIES[geometry], CUDA_REF_TOL)


@pytest.mark.cuda
@DALI
def test_dali_decodes_a_batch_in_one_run_and_keeps_damaged_files_apart(videos, tmp_path, corrupt_video):
    """Several clips of one batch, one of them damaged: the others decode (as PyAV decodes them), the damaged one
    is a DataError of its own."""
    from vmb.data.video_dali import batch_decoder

    path = videos["prepared"][0]
    damaged = corrupt_video(tmp_path / "damaged.mp4")
    timing, geometry = TIMINGS["random_start_grid"], GEOMETRIES["crop_downscale_odd_box"]
    requests = [ClipRequest(p, timing(np.random.default_rng(seed)), geometry(None))
                for seed, p in enumerate([path, damaged, path, path])]
    results = batch_decoder(torch.device("cuda", 0))(requests)
    assert isinstance(results[1], DataError)
    for seed in (0, 2, 3):
        expected = pyav_decode_clip(path, timing(np.random.default_rng(seed)), geometry(None))
        assert results[seed].device.type == "cuda"
        assert frame_differences(results[seed].cpu(), expected).max() < TOL


@pytest.fixture
def dali_without_dali(monkeypatch):
    """vmb.data.video_dali loaded over stand-in `nvidia.dali` modules (its pure functions run without DALI);
    not registered in sys.modules."""
    stubs = {name: types.ModuleType(name) for name in ("nvidia", "nvidia.dali", "nvidia.dali.plugin",
                                                        "nvidia.dali.plugin.pytorch")}
    stubs["nvidia.dali"].__dict__.update(Pipeline=object, fn=None, types=None,
                                         pipeline_def=lambda **kwargs: lambda function: function)
    stubs["nvidia.dali.plugin.pytorch"].feed_ndarray = None
    for name, module in stubs.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.find_spec("vmb.data.video_dali")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("timing", TIMINGS)
def test_dali_frame_indices_are_the_frames_pyav_shows(videos, dali_without_dali, fmt, timing):
    """What the DALI backend hands to fn.decoders.video(frames=...) is exactly what PyAV shows."""
    path, fps = videos[fmt]
    for seed in range(3):
        clip, seen = decode_recorded(pyav_decode_clip, path, TIMINGS[timing], GEOMETRIES["full_frame"], seed)
        rate, num_frames, duration = dali_without_dali.stream_timing(path)
        assert (rate, num_frames, duration) == (fps, NUM_FRAMES, seen["duration"])
        indices = dali_without_dali.frame_indices(seen["times"], rate, num_frames)
        assert indices == shown_indices(clip, reference(ramp_frames(), seen["box"], seen["size"]))


def test_dali_rejects_variable_frame_rate(tmp_path, dali_without_dali):
    path = tmp_path / "vfr.mp4"
    with av.open(str(path), mode="w") as container:
        stream = add_video_stream(container, FORMATS["intra"][0], WIDTH, HEIGHT, 30)
        for index, pts in enumerate((0, 1, 3, 4, 8, 9, 10, 15)):
            frame = av.VideoFrame.from_ndarray(ramp_frames()[index], format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 30)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(DataError, match="constant frame rate"):
        dali_without_dali.stream_timing(path)


@pytest.fixture
def cuda_decoder_on_cpu(monkeypatch):
    """torchcodec_cuda's batch decoder on this machine, CUDA pretended, with `_decode` replaced by `fail`:
    `set_failure(exc)` makes every decode raise `exc`."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    failure = {}

    def fake_decode(path, timing, geometry, device):
        timing(1.0)  # the clip's instants are asked before the frames fail, as torchcodec does
        raise failure["exc"]

    monkeypatch.setattr(torchcodec_backend, "_decode", fake_decode)
    return torchcodec_backend.batch_decoder_cuda(torch.device("cuda", 0)), failure.__setitem__


def test_gpu_failure_on_a_good_file_stops_the_run(videos, cuda_decoder_on_cpu):
    """An NVDEC or CUDA error on a file that decodes on the CPU is not a damaged video: it is raised, never
    replaced and counted."""
    decode_batch, set_failure = cuda_decoder_on_cpu
    set_failure("exc", torchcodec_backend._DecodeFailed("CUDA error: an illegal memory access"))
    request = ClipRequest(videos["prepared"][0], TIMINGS["random_start_grid"](np.random.default_rng(0)), full_frame())
    with pytest.raises(DeviceDecodeError) as info:
        decode_batch([request])
    message = str(info.value)
    assert "GPU decoding failed" in message and "decodes on the CPU" in message and "\n" not in message


def test_gpu_failure_on_a_damaged_file_is_that_clip_s_data_error(tmp_path, videos, corrupt_video, cuda_decoder_on_cpu):
    decode_batch, set_failure = cuda_decoder_on_cpu
    set_failure("exc", torchcodec_backend._DecodeFailed("Could not decode frame"))
    damaged = corrupt_video(tmp_path / "damaged.mp4")
    (result,) = decode_batch([ClipRequest(damaged, TIMINGS["random_start_grid"](np.random.default_rng(0)),
                                          full_frame())])
    assert isinstance(result, DataError) and str(result).startswith(f"{damaged}: cannot decode video")


def test_gpu_out_of_memory_propagates(videos, cuda_decoder_on_cpu):
    decode_batch, set_failure = cuda_decoder_on_cpu
    set_failure("exc", torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    with pytest.raises(torch.OutOfMemoryError):
        decode_batch([ClipRequest(videos["prepared"][0], TIMINGS["random_start_grid"](np.random.default_rng(0)),
                                  full_frame())])


def test_decodes_on_cpu_tells_damaged_files(tmp_path, videos, corrupt_video):
    assert all(decodes_on_cpu(path) for path, _ in videos.values())
    assert not decodes_on_cpu(corrupt_video(tmp_path / "random.mp4"))
    assert not decodes_on_cpu(tmp_path / "missing.mp4")
    truncated = tmp_path / "truncated.mp4"
    data = videos["prepared"][0].read_bytes()
    truncated.write_bytes(data[:len(data) // 2])
    assert not decodes_on_cpu(truncated)


def test_dali_failed_run_keeps_damaged_files_apart(tmp_path, videos, corrupt_video, dali_without_dali):
    """After a DALI run fails: files that fail on the CPU become their clips' DataErrors and the others are kept
    for another run; when every file decodes on the CPU the GPU failed."""
    good, damaged = videos["prepared"][0], corrupt_video(tmp_path / "damaged.mp4")
    requests = [ClipRequest(path, None, None) for path in (good, damaged, good)]
    planned = [(position, None, [0]) for position in range(3)]
    results = [None] * 3
    kept = dali_without_dali._drop_damaged(requests, planned, results, "nvdec error")
    assert [item[0] for item in kept] == [0, 2]
    assert isinstance(results[1], DataError) and "DALI: nvdec error" in str(results[1])
    with pytest.raises(DeviceDecodeError, match="every file decodes on the CPU"):
        dali_without_dali._drop_damaged(requests, kept, results, "nvdec error")


@pytest.mark.parametrize("clips, capacity", [(1, 1), (2, 2), (3, 4), (8, 8), (9, 16)])
def test_dali_pipeline_sizes_are_powers_of_two(dali_without_dali, clips, capacity):
    assert dali_without_dali._batch_capacity(clips) == capacity


def test_dali_pipeline_build_failure_is_a_config_error_and_not_cached(dali_without_dali, monkeypatch):
    """A pipeline that cannot be built is a one-line ConfigError, and nothing half-built is kept for later calls."""
    class Unbuildable:
        def build(self):
            raise RuntimeError("[/opt/dali/dali/operators/decoder/video: 12] NVDEC is not available\nstack...")

    monkeypatch.setattr(dali_without_dali, "_clip_pipeline", lambda **kwargs: Unbuildable())
    with pytest.raises(ConfigError) as info:
        dali_without_dali._pipeline(0, 4)
    assert "NVDEC is not available" in str(info.value) and "\n" not in str(info.value)
    assert dali_without_dali._pipelines == {}
