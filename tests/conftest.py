"""Shared fixtures: a tiny Kinetics-format video dataset, and helpers that write single test videos.

The tiny dataset has 4 classes; each video shows a coloured square (colour and direction of motion depend
on the label) on a dim background of the same tint, so a small model can learn it in a few steps. There are
16 training videos (4 per class) and 7 validation videos (2, 2, 2, 1): an odd validation size, so that a
distributed evaluation that pads its shards is caught.
"""
from __future__ import annotations

import os
import pathlib
import shutil
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from vmb.data.prepare.synthetic import write_mp4

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE_CONFIG = REPO_ROOT / "configs" / "smoke" / "X3D.yaml"

# The suite runs on small CPU machines, often next to other jobs: one intra-op thread avoids the
# oversubscription that makes tiny training steps 10-100x slower. Subprocesses get OMP_NUM_THREADS=1.
torch.set_num_threads(1)

TINY_NUM_CLASSES = 4
TINY_TRAIN_PER_CLASS = (4, 4, 4, 4)
TINY_VAL_PER_CLASS = (2, 2, 2, 1)
TINY_WIDTH, TINY_HEIGHT = 48, 40
TINY_FRAMES, TINY_FPS = 20, 10

# Square colour and motion (dx, dy in px per frame) per label.
_COLOURS = ((255, 40, 40), (40, 255, 40), (40, 40, 255), (255, 255, 255))
_DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: end-to-end tests that train a model (tens of seconds)")
    config.addinivalue_line("markers", "cuda: needs an NVIDIA GPU (decoding, training, evaluation); skipped if none")


def tiny_video_frames(label: int, rng: np.random.Generator) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of one tiny-dataset video of class `label`."""
    size = 12
    frames = np.empty((TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH, 3), dtype=np.uint8)
    frames[...] = [c // 3 for c in _COLOURS[label]]  # a dim background tinted like the square
    x0 = int(rng.integers(8, TINY_WIDTH - size - 8))
    y0 = int(rng.integers(8, TINY_HEIGHT - size - 8))
    dx, dy = _DIRECTIONS[label]
    for t in range(TINY_FRAMES):
        x = (x0 + dx * t) % (TINY_WIDTH - size)
        y = (y0 + dy * t) % (TINY_HEIGHT - size)
        frames[t, y:y + size, x:x + size] = _COLOURS[label]
    return frames


def write_tiny_dataset(root: pathlib.Path) -> pathlib.Path:
    """Write the tiny dataset (videos, train.csv, val.csv) into `root`; return `root`."""
    for split, per_class in (("train", TINY_TRAIN_PER_CLASS), ("val", TINY_VAL_PER_CLASS)):
        lines = []
        for label in range(TINY_NUM_CLASSES):
            (root / split / f"class{label}").mkdir(parents=True, exist_ok=True)
            for index in range(per_class[label]):
                relative = f"{split}/class{label}/{index:03d}.mp4"
                rng = np.random.default_rng([split == "val", label, index])
                write_mp4(root / relative, tiny_video_frames(label, rng), TINY_FPS)
                lines.append(f"{relative} {label}\n")
        (root / f"{split}.csv").write_text("".join(lines))
    return root



@pytest.fixture(scope="session")
def tiny_videos_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A read-only-by-convention tiny Kinetics-format dataset (4 classes, 16 train + 7 val videos)."""
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny_videos"))


@pytest.fixture
def tiny_dataset_copy(tiny_videos_dir: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    """A private copy of the tiny dataset that a test may modify."""
    return pathlib.Path(shutil.copytree(tiny_videos_dir, tmp_path / "data"))


def write_corrupt_video(path: pathlib.Path, size: int = 4096, seed: int = 0) -> pathlib.Path:
    """Random bytes under a .mp4 name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def write_video(path: pathlib.Path, frames: np.ndarray, fps: int, lossless: bool = True, gop: int = 4) -> pathlib.Path:
    """Encode uint8 (T, H, W, 3) frames as H.264 yuv420p; `lossless` uses qp 0 so that flat grey levels
    survive (within +-2 after the RGB <-> YUV round trip). A short GOP makes a centred clip need a seek."""
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": "0", "threads": "1",
               "preset": "ultrafast"}
    options.update({"qp": "0"} if lossless else {"crf": "20"})
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps, options=options)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def gray_frames(num_frames: int, width: int = 48, height: int = 40, step: int = 10) -> np.ndarray:
    """Frame i is a constant grey of level step * i."""
    assert step * (num_frames - 1) <= 255
    return np.stack([np.full((height, width, 3), step * i, dtype=np.uint8) for i in range(num_frames)])


@pytest.fixture(scope="session")
def corrupt_video():
    """`corrupt_video(path)` writes random bytes to `path` and returns it."""
    return write_corrupt_video


@pytest.fixture(scope="session")
def make_video():
    """`make_video(path, frames, fps, lossless=True, gop=4)` encodes frames to `path` and returns it."""
    return write_video


@pytest.fixture(scope="session")
def make_gray_video():
    """`make_gray_video(path, num_frames, fps)`: frame i has the constant grey level 10 * i."""

    def make(path: pathlib.Path, num_frames: int, fps: int, width: int = 48, height: int = 40) -> pathlib.Path:
        return write_video(path, gray_frames(num_frames, width, height), fps)

    return make


# A tiny X3D on the tiny dataset: one epoch (4 steps of 4 clips) and an evaluation take well under a second.
TINY_TRAIN_OVERRIDES = [
    "X3D.WIDTH_FACTOR", "0.5", "X3D.DEPTH_FACTOR", "0.5", "X3D.DIM_C5", "64", "X3D.DIM_C1", "8",
    "DATA.NUM_FRAMES", "4", "DATA.SAMPLING_RATE", "2", "DATA.TARGET_FPS", "10",
    "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32", "DATA.TRAIN_JITTER_SCALES", "[32,40]",
    "TRAIN.BATCH_SIZE", "4", "TEST.BATCH_SIZE", "4", "MODEL.NUM_CLASSES", "4",
    "DATA_LOADER.NUM_WORKERS", "0", "DATA_LOADER.PIN_MEMORY", "False", "SYNTHETIC.ENABLE", "False",
    "NUM_GPUS", "0",
]


@pytest.fixture(scope="session")
def tiny_train_args():
    """`tiny_train_args(data_dir, out_dir, *extra)`: KEY VALUE overrides of the smoke X3D config that train
    a tiny X3D on `data_dir` into `out_dir` (extra pairs win)."""

    def args(data_dir: pathlib.Path, out_dir: pathlib.Path, *extra: str) -> list[str]:
        return [*TINY_TRAIN_OVERRIDES, "DATA.PATH_TO_DATA_DIR", str(data_dir), "OUTPUT_DIR", str(out_dir),
                *map(str, extra)]

    return args


@pytest.fixture(scope="session")
def smoke_config() -> pathlib.Path:
    """The smoke X3D config the tiny runs override."""
    return SMOKE_CONFIG


def subprocess_env() -> dict:
    """Environment for child Python processes: one thread each, no GPU."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    return env


@pytest.fixture(scope="session")
def child_env() -> dict:
    return subprocess_env()
