"""Learnable synthetic video classification data in the Kinetics layout: the smoke benchmark's data, and a
Kinetics20-shaped set for dry runs.

The videos show 20 classes of motion that only motion over time tells apart
(vmb.data.prepare.synthetic_render).

Two profiles (`PROFILES`) set the shape and the encoding:

- "smoke": 96x72, 32 frames at 15 fps, x264 with 8-frame GOPs; the smoke benchmark's data.
- "kinetics": Kinetics20's shape, 10 s at 30 fps, 16:9 at short side 256 (456x256), encoded in
  `formats.PREPARED` (H.264 all-intra) as tools/prepare_kinetics20.py writes Kinetics20; for dry runs
  that measure a machine's throughput (configs/dryrun/).

The videos are real H.264 .mp4 files, written as PySlowFast's Kinetics dataset reads them::

    data_dir/
        classes.txt              one class name per line, in label order
        train.csv, val.csv       "train/<class_name>/000012.mp4 <label>" per line
        train/<class_name>/NNNNNN.mp4
        val/<class_name>/NNNNNN.mp4
        manifest.json            every clip with its sha256, and the dataset fingerprint (vmb.data.prepare.manifest)
        synthetic_spec.json      the spec; written last, marks a complete dataset

Generation is deterministic (one-thread x264 without mbtree): the same spec gives the same bytes on the
same software stack, with any number of worker processes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import pathlib
import shutil
import signal
from concurrent.futures import ProcessPoolExecutor, as_completed
from fractions import Fraction
from typing import Iterable

import av
import numpy as np
from tqdm import tqdm

from vmb.data.prepare.formats import FORMAT_VERSION, PREPARED, add_video_stream
from vmb.data.prepare.manifest import MANIFEST, write_manifest
from vmb.data.prepare.synthetic_render import CLASS_NAMES, render_frames, render_video
from vmb.errors import ConfigError, DataError

GENERATOR_VERSION = 2
SPEC_FILE = "synthetic_spec.json"

# libx264 settings: short GOP for cheap seeking, no B-frames (no edit list, pts start at 0).
# Reproducible bytes need one thread and no macroblock-tree rate control: x264's mbtree reads
# uninitialised stack memory (valgrind), which made rare encodes differ from run to run.
_X264_OPTIONS = {
    "preset": "veryfast",
    "crf": "22",
    "g": "8",
    "keyint_min": "8",
    "sc_threshold": "0",
    "bf": "0",
    "mbtree": "0",
    "threads": "1",
}
_SPLITS = ("train", "val")

# How the videos are encoded: the smoke data's own x264 settings above, or the benchmark's prepared format.
SMOKE_ENCODING = "smoke"
ENCODINGS = (SMOKE_ENCODING, PREPARED.name)


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """Size and seed of a synthetic dataset; it fully determines the generated files."""

    num_classes: int = 20
    train_per_class: int = 24
    val_per_class: int = 8
    width: int = 96
    height: int = 72
    num_frames: int = 32
    fps: int = 15
    seed: int = 0
    encoding: str = SMOKE_ENCODING  # one of ENCODINGS

    def __post_init__(self) -> None:
        if self.num_classes != len(CLASS_NAMES):
            raise ConfigError(
                f"synthetic num_classes={self.num_classes}: the synthetic motion set has exactly "
                f"{len(CLASS_NAMES)} classes"
            )
        for name in ("train_per_class", "val_per_class", "fps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"synthetic {name}={getattr(self, name)}: must be at least 1")
        if self.num_frames < 2:
            raise ConfigError(f"synthetic num_frames={self.num_frames}: must be at least 2")
        for name in ("width", "height"):
            value = getattr(self, name)
            if value < 16 or value % 2:
                raise ConfigError(f"synthetic {name}={value}: must be even and at least 16 (yuv420p)")
        if self.encoding not in ENCODINGS:
            raise ConfigError(f"synthetic encoding={self.encoding!r}: must be one of {', '.join(ENCODINGS)}")

    def per_class(self, split: str) -> int:
        """Number of videos per class in `split` ("train" or "val")."""
        return self.train_per_class if split == "train" else self.val_per_class


_KINETICS_WIDTH, _KINETICS_HEIGHT = PREPARED.output_size(16, 9)  # 16:9 at short side 256: 456x256
PROFILES: dict[str, SyntheticSpec] = {
    "smoke": SyntheticSpec(),
    "kinetics": SyntheticSpec(width=_KINETICS_WIDTH, height=_KINETICS_HEIGHT, num_frames=10 * PREPARED.fps,
                              fps=PREPARED.fps, encoding=PREPARED.name),
}
PROFILE_DIRS = {"smoke": "data/smoke", "kinetics": "data/dryrun"}  # where the configs look for them


def profile_spec(profile: str, train_per_class: int | None = None, val_per_class: int | None = None,
                 seconds: float | None = None, seed: int | None = None) -> SyntheticSpec:
    """The spec of PROFILES[profile] with the given counts, clip length and seed (None keeps the profile's)."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown synthetic profile {profile!r}; choose one of {', '.join(PROFILES)}")
    spec = PROFILES[profile]
    changes = {"train_per_class": train_per_class, "val_per_class": val_per_class, "seed": seed}
    if seconds is not None:
        changes["num_frames"] = round(seconds * spec.fps)
        if changes["num_frames"] < 2:
            raise ConfigError(f"{seconds} s at {spec.fps} fps is {changes['num_frames']} frame(s); "
                              "a clip needs at least 2")
    return dataclasses.replace(spec, **{k: v for k, v in changes.items() if v is not None})


def ensure_config_dataset(cfg) -> None:
    """The synthetic data a config with SYNTHETIC.ENABLE trains on (the smoke benchmark's), written into its
    DATA.PATH_TO_DATA_DIR on first use (offline data preparation: untimed); nothing for other configs."""
    if cfg.SYNTHETIC.ENABLE:
        ensure_synthetic_dataset(cfg.DATA.PATH_TO_DATA_DIR, SyntheticSpec(
            train_per_class=cfg.SYNTHETIC.TRAIN_PER_CLASS, val_per_class=cfg.SYNTHETIC.VAL_PER_CLASS,
            seed=cfg.SYNTHETIC.SEED))


def ensure_synthetic_dataset(
    data_dir: str | os.PathLike, spec: SyntheticSpec = SyntheticSpec(), force: bool = False, workers: int = 1,
    progress: bool = False,
) -> pathlib.Path:
    """Generate the dataset into data_dir unless an identical one (same spec) is already there; return data_dir.

    The files are written into a temporary sibling directory that replaces data_dir only when
    complete. An existing data_dir with another spec (or no spec file) raises DataError unless
    `force` is set, in which case it is replaced. A complete dataset written before manifests existed
    gets its manifest.json from the videos already there. `workers` > 1 renders and encodes videos in
    that many processes; `progress` shows a progress bar on stderr.
    """
    if workers < 1:
        raise ConfigError(f"workers={workers}: must be at least 1")
    data_dir = pathlib.Path(data_dir)
    expected = _spec_record(spec)
    if _existing_dataset_matches(data_dir, expected, force):
        if not (data_dir / MANIFEST).is_file():
            _write_manifest(data_dir, spec, _existing_clip_records(data_dir, spec))
        return data_dir

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = data_dir.parent / f"{data_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    try:
        _write_dataset(tmp_dir, spec, expected, workers, progress)
        _move_into_place(tmp_dir, data_dir, expected)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return data_dir


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: int) -> None:
    """Encode uint8 frames (T, H, W, 3) as an H.264 (yuv420p) .mp4 at `fps`, without audio."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps, options=dict(_X264_OPTIONS))
        stream.width = frames.shape[2]
        stream.height = frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        _encode_frames(container, stream, frames, fps)


def write_prepared_mp4(path: str | os.PathLike, frames: Iterable[np.ndarray], width: int, height: int,
                       fps: int) -> None:
    """Encode uint8 (H, W, 3) frames, as they come, in formats.PREPARED (H.264 all-intra) at `fps`, without
    audio."""
    with av.open(str(path), mode="w", options=PREPARED.container_options()) as container:
        _encode_frames(container, add_video_stream(container, PREPARED, width, height, fps), frames, fps)


def _encode_frames(container: av.container.OutputContainer, stream: av.video.stream.VideoStream,
                   frames: Iterable[np.ndarray], fps: int) -> None:
    """Encode and mux uint8 RGB frames with pts 0, 1, 2, ... in 1/fps units, then flush the encoder."""
    time_base = Fraction(1, fps)
    for index, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = index
        frame.time_base = time_base
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def _video_seed(spec: SyntheticSpec, split: str, label: int, index: int) -> np.random.SeedSequence:
    """Independent seed per (spec.seed, split, label, index): val never repeats a train video."""
    return np.random.SeedSequence([spec.seed, _SPLITS.index(split), label, index])


def _clip_keys(spec: SyntheticSpec) -> list[tuple[str, int, int]]:
    """(split, label, index) of every video of `spec`, in CSV order."""
    return [(split, label, index) for split in _SPLITS for label in range(len(CLASS_NAMES))
            for index in range(spec.per_class(split))]


def _relative_path(split: str, label: int, index: int) -> str:
    """Where a video lives, relative to the dataset folder (as train.csv / val.csv list it)."""
    return f"{split}/{CLASS_NAMES[label]}/{index:06d}.mp4"


def _write_clip(root: pathlib.Path, spec: SyntheticSpec, split: str, label: int, index: int) -> dict:
    """Render and encode one video into root; return its manifest record."""
    path = root / _relative_path(split, label, index)
    rng = np.random.default_rng(_video_seed(spec, split, label, index))
    if spec.encoding == SMOKE_ENCODING:
        write_mp4(path, render_video(label, rng, spec), spec.fps)
    else:
        write_prepared_mp4(path, render_frames(label, rng, spec), spec.width, spec.height, spec.fps)
    return _clip_record(root, spec, split, label, index)


def _clip_record(root: pathlib.Path, spec: SyntheticSpec, split: str, label: int, index: int) -> dict:
    """The manifest record of a written video (see vmb.data.prepare.manifest.CLIP_FIELDS); its source is the file."""
    relative = _relative_path(split, label, index)
    data = (root / relative).read_bytes()
    return {
        "id": relative.removesuffix(".mp4"), "label": CLASS_NAMES[label], "label_index": label, "split": split,
        "path": relative, "source": "synthetic", "source_sha256": hashlib.sha256(data).hexdigest(),
        "source_bytes": len(data), "frames": spec.num_frames, "fps": spec.fps,
        "duration_s": spec.num_frames / spec.fps, "bytes": len(data),
    }


def _existing_clip_records(data_dir: pathlib.Path, spec: SyntheticSpec) -> list[dict]:
    """Manifest records of the videos of a complete dataset already in data_dir."""
    try:
        return [_clip_record(data_dir, spec, *key) for key in _clip_keys(spec)]
    except OSError as exc:
        raise DataError(f"{data_dir}: cannot read a video to write its manifest ({exc.strerror}: {exc.filename}); "
                        "pass --force to regenerate it or delete the folder") from None


def _ignore_interrupts() -> None:
    """Worker initializer: Ctrl-C stops the parent, which cancels the queued videos and waits for the rest."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _write_clips(root: pathlib.Path, spec: SyntheticSpec, workers: int, progress: bool) -> list[dict]:
    """Write every video of `spec` into root with `workers` processes; return their records in CSV order."""
    keys = _clip_keys(spec)
    with tqdm(total=len(keys), unit="video", desc="synthetic videos", disable=not progress) as bar:
        if workers > 1:
            return _write_clips_in_pool(root, spec, keys, min(workers, len(keys)), bar)
        records = []
        for key in keys:
            records.append(_write_clip(root, spec, *key))
            bar.update()
        return records


def _write_clips_in_pool(root: pathlib.Path, spec: SyntheticSpec, keys: list[tuple[str, int, int]], workers: int,
                         bar: tqdm) -> list[dict]:
    """_write_clips with a pool of `workers` fresh (spawned) processes; the first failure stops it."""
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_ignore_interrupts)
    try:
        futures = [pool.submit(_write_clip, root, spec, *key) for key in keys]
        for future in as_completed(futures):
            future.result()
            bar.update()
        return [future.result() for future in futures]
    finally:
        # After a failure or Ctrl-C, no worker may still write into root when the caller removes it.
        pool.shutdown(wait=True, cancel_futures=True)


def _write_dataset(root: pathlib.Path, spec: SyntheticSpec, record: dict, workers: int, progress: bool) -> None:
    """Write classes.txt, all videos, the CSVs, the manifest and finally the spec file into root."""
    root.mkdir(parents=True)
    (root / "classes.txt").write_text("".join(f"{name}\n" for name in CLASS_NAMES))
    for split in _SPLITS:
        for name in CLASS_NAMES:
            (root / split / name).mkdir(parents=True)
    clips = _write_clips(root, spec, workers, progress)
    for split in _SPLITS:
        lines = [f"{clip['path']} {clip['label_index']}\n" for clip in clips if clip["split"] == split]
        (root / f"{split}.csv").write_text("".join(lines))
    _write_manifest(root, spec, clips)
    (root / SPEC_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def _write_manifest(root: pathlib.Path, spec: SyntheticSpec, clips: list[dict]) -> None:
    """Write root/manifest.json; its params are the spec record, so the fingerprint covers the spec."""
    write_manifest(root, "synthetic", _spec_record(spec), list(CLASS_NAMES), clips)


def _spec_record(spec: SyntheticSpec) -> dict:
    """Content of synthetic_spec.json for `spec` (and the manifest's params): the spec, the generator
    version, and for the prepared encoding the video format and its version."""
    record = {**dataclasses.asdict(spec), "generator_version": GENERATOR_VERSION}
    if spec.encoding == PREPARED.name:
        record.update(format=PREPARED.as_dict(), format_version=FORMAT_VERSION)
    return record


def _read_spec_record(data_dir: pathlib.Path) -> dict | None:
    """The spec record stored in data_dir, or None if there is none (or it is unreadable)."""
    try:
        record = json.loads((data_dir / SPEC_FILE).read_text())
    except (OSError, ValueError):
        return None
    if isinstance(record, dict):  # spec files from before the encoding field describe smoke-encoded videos
        record.setdefault("encoding", SMOKE_ENCODING)
    return record


def _existing_dataset_matches(data_dir: pathlib.Path, expected: dict, force: bool) -> bool:
    """True if data_dir already holds the expected dataset; raises DataError if it holds anything
    else and `force` is False. An empty directory counts as absent."""
    if not data_dir.exists() or (data_dir.is_dir() and not any(data_dir.iterdir())):
        return False
    if not data_dir.is_dir():
        raise DataError(f"{data_dir} is a file, not a dataset folder; delete it or pick another --out")
    found = _read_spec_record(data_dir)
    if found == expected:
        return True
    if force:
        return False
    if found is None:
        reason = f"has no readable {SPEC_FILE}, so it is not a complete synthetic dataset"
    else:
        keys = sorted(set(found) | set(expected))
        diffs = [f"{k}={found.get(k)!r} (wanted {expected.get(k)!r})" for k in keys if found.get(k) != expected.get(k)]
        reason = f"holds a synthetic dataset with another spec: {', '.join(diffs)}"
    raise DataError(f"{data_dir} {reason}; pass --force to regenerate it or delete the folder")


def _move_into_place(tmp_dir: pathlib.Path, data_dir: pathlib.Path, expected: dict) -> None:
    """Atomically replace data_dir by the finished tmp_dir (removing an old data_dir first).

    If another process finished the same dataset first, its copy is kept.
    """
    if data_dir.exists() and _read_spec_record(data_dir) != expected:
        trash = data_dir.parent / f"{data_dir.name}.old-{os.getpid()}"
        os.replace(data_dir, trash)
        shutil.rmtree(trash)
    try:
        os.replace(tmp_dir, data_dir)
    except OSError:
        if _read_spec_record(data_dir) != expected:
            raise
