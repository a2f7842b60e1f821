"""Tests of the synthetic datasets: layout, decoding, caching, determinism, manifests, learnability, and the
Kinetics20-shaped profile."""
import dataclasses
import hashlib
import json
import pathlib
import shutil
import subprocess
import sys

import av
import numpy as np
import pytest

from vmb.data.prepare import synthetic
from vmb.data.prepare.formats import FORMAT_VERSION, PREPARED
from vmb.data.prepare.manifest import MANIFEST, read_manifest
from vmb.data.prepare.synthetic import (GENERATOR_VERSION, PROFILES, SyntheticSpec, ensure_synthetic_dataset,
                                        profile_spec)
from vmb.data.prepare.synthetic_render import CLASS_NAMES, MOTIONS, render_frames, render_video
from vmb.errors import ConfigError, DataError

TINY = SyntheticSpec(train_per_class=1, val_per_class=2, width=48, height=32, num_frames=16)
# The Kinetics20-shaped profile at its full frame size, 1 train / 1 val video per class, 6 frames (0.2 s).
KINETICS_TINY = profile_spec("kinetics", train_per_class=1, val_per_class=1, seconds=0.2)
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return ensure_synthetic_dataset(tmp_path_factory.mktemp("synthetic") / "smoke", TINY)


@pytest.fixture(scope="module")
def kinetics_dataset(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A tiny kinetics-profile set, written by two worker processes."""
    return ensure_synthetic_dataset(tmp_path_factory.mktemp("synthetic") / "dryrun", KINETICS_TINY, workers=2)


def read_csv(path: pathlib.Path) -> list[tuple[str, int]]:
    rows = []
    for line in path.read_text().splitlines():
        relative, label = line.split(" ")
        rows.append((relative, int(label)))
    return rows


def decode(path: pathlib.Path) -> np.ndarray:
    """All frames of a video as uint8 (T, H, W, 3)."""
    with av.open(str(path)) as container:
        assert len(container.streams.audio) == 0
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == TINY.fps
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(stream)])


def frame_motion(video: np.ndarray) -> float:
    """Mean absolute difference between consecutive frames."""
    return float(np.abs(np.diff(video.astype(np.int16), axis=0)).mean())


def best_shift(first: np.ndarray, later: np.ndarray, max_shift: int = 15) -> tuple[int, int]:
    """Integer content displacement (dx, dy) from `first` to `later`, by exhaustive block matching."""
    a = first.astype(np.float32)
    b = later.astype(np.float32)
    height, width = a.shape[:2]
    errors = {}
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            moved = b[max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)]
            source = a[max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)]
            errors[(dx, dy)] = float(np.abs(moved - source).mean())
    return min(errors, key=errors.get)


def test_layout_csvs_and_decoding(tiny_dataset: pathlib.Path) -> None:
    assert (tiny_dataset / "classes.txt").read_text().splitlines() == list(CLASS_NAMES)
    record = json.loads((tiny_dataset / "synthetic_spec.json").read_text())
    assert record["generator_version"] == GENERATOR_VERSION and record["width"] == TINY.width
    for split, per_class in (("train", TINY.train_per_class), ("val", TINY.val_per_class)):
        rows = read_csv(tiny_dataset / f"{split}.csv")
        assert len(rows) == per_class * len(CLASS_NAMES)
        assert rows == sorted(rows, key=lambda row: (row[1], row[0]))
        assert sorted({label for _, label in rows}) == list(range(20))
        for relative, label in rows:
            assert relative.startswith(f"{split}/{CLASS_NAMES[label]}/") and relative.endswith(".mp4")
            frames = decode(tiny_dataset / relative)
            assert frames.shape == (TINY.num_frames, TINY.height, TINY.width, 3)
    assert not list(tiny_dataset.parent.glob("*.tmp-*"))


def test_train_and_val_videos_differ(tiny_dataset: pathlib.Path) -> None:
    name = CLASS_NAMES[0]
    videos = [decode(tiny_dataset / f"{split}/{name}/000000.mp4") for split in ("train", "val")]
    videos.append(decode(tiny_dataset / f"val/{name}/000001.mp4"))
    assert not np.array_equal(videos[0], videos[1])
    assert not np.array_equal(videos[1], videos[2])


def test_same_spec_is_a_no_op(tiny_dataset: pathlib.Path) -> None:
    marker = tiny_dataset / "synthetic_spec.json"
    video = tiny_dataset / f"train/{CLASS_NAMES[3]}/000000.mp4"
    before = (marker.stat().st_mtime_ns, video.stat().st_mtime_ns)
    assert ensure_synthetic_dataset(str(tiny_dataset), TINY) == tiny_dataset
    assert (marker.stat().st_mtime_ns, video.stat().st_mtime_ns) == before


def test_other_spec_raises_unless_forced(tmp_path: pathlib.Path) -> None:
    data_dir = ensure_synthetic_dataset(tmp_path / "smoke", TINY)
    old_video = (data_dir / f"train/{CLASS_NAMES[0]}/000000.mp4").read_bytes()
    other = dataclasses.replace(TINY, seed=7)
    with pytest.raises(DataError, match=r"seed=0 \(wanted 7\).*--force") as info:
        ensure_synthetic_dataset(data_dir, other)
    assert "\n" not in str(info.value)

    ensure_synthetic_dataset(data_dir, other, force=True)
    assert json.loads((data_dir / "synthetic_spec.json").read_text())["seed"] == 7
    assert (data_dir / f"train/{CLASS_NAMES[0]}/000000.mp4").read_bytes() != old_video
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smoke"]


def test_folder_without_spec_raises(tmp_path: pathlib.Path) -> None:
    (tmp_path / "smoke").mkdir()
    (tmp_path / "smoke" / "notes.txt").write_text("not a dataset")
    with pytest.raises(DataError, match="synthetic_spec.json"):
        ensure_synthetic_dataset(tmp_path / "smoke", TINY)


def test_interrupted_generation_leaves_nothing(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = synthetic.write_mp4
    written = []

    def write_then_interrupt(path: pathlib.Path, frames: np.ndarray, fps: int) -> None:
        if len(written) == 3:
            raise KeyboardInterrupt
        written.append(path)
        real_write(path, frames, fps)

    monkeypatch.setattr(synthetic, "write_mp4", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic_dataset(tmp_path / "smoke", TINY)
    assert len(written) == 3 and not list(tmp_path.iterdir())


def test_generation_is_byte_for_byte_deterministic(tmp_path: pathlib.Path, tiny_dataset: pathlib.Path) -> None:
    again = ensure_synthetic_dataset(tmp_path / "again", TINY)
    files = sorted(p.relative_to(tiny_dataset) for p in tiny_dataset.rglob("*") if p.is_file())
    assert len(files) == 20 * 3 + 5
    for relative in files:
        if (again / relative).read_bytes() != (tiny_dataset / relative).read_bytes():
            frames_equal = relative.suffix == ".mp4" and np.array_equal(
                decode(again / relative), decode(tiny_dataset / relative)
            )
            pytest.fail(f"{relative} differs between two generations (decoded frames equal: {frames_equal})")


def test_render_is_deterministic() -> None:
    first = render_video(5, np.random.default_rng(3), TINY)
    assert first.dtype == np.uint8 and first.shape == (16, 32, 48, 3)
    np.testing.assert_array_equal(first, render_video(5, np.random.default_rng(3), TINY))
    assert not np.array_equal(first, render_video(5, np.random.default_rng(4), TINY))


@pytest.mark.parametrize("motion", range(len(MOTIONS)), ids=MOTIONS)
def test_fast_moves_more_than_slow(motion: int) -> None:
    for seed in range(2):
        # The same generator state gives the same texture and jitter: only the speed differs.
        slow = frame_motion(render_video(2 * motion, np.random.default_rng(seed), TINY))
        fast = frame_motion(render_video(2 * motion + 1, np.random.default_rng(seed), TINY))
        assert slow > 1.0
        assert fast > 1.8 * slow


def test_pan_directions_and_flip_invariance() -> None:
    label = {name: index for index, name in enumerate(CLASS_NAMES)}
    shifts = {}
    for name in ("pan_up_slow", "pan_down_slow", "pan_horizontal_slow", "diagonal_up_fast", "pan_up_fast"):
        shifts[name] = []
        for seed in range(6):
            video = render_video(label[name], np.random.default_rng(seed), TINY)
            shifts[name].append(best_shift(video[0], video[3]))  # 3 frames: 4.8 px slow, 12 px fast
    assert all(dx == 0 and -6 <= dy <= -4 for dx, dy in shifts["pan_up_slow"])
    assert all(dx == 0 and 4 <= dy <= 6 for dx, dy in shifts["pan_down_slow"])
    assert all(dx == 0 and -15 <= dy <= -9 for dx, dy in shifts["pan_up_fast"])
    # Left/right is random per video, so a horizontal flip maps each class onto itself.
    horizontal = [dx for dx, dy in shifts["pan_horizontal_slow"] if dy == 0 and 4 <= abs(dx) <= 6]
    assert len(horizontal) == 6 and min(horizontal) < 0 < max(horizontal)
    diagonal = shifts["diagonal_up_fast"]
    assert all(-11 <= dy <= -6 and 6 <= abs(dx) <= 11 for dx, dy in diagonal)
    assert min(dx for dx, _ in diagonal) < 0 < max(dx for dx, _ in diagonal)


def test_first_frame_carries_no_class_information() -> None:
    spec = SyntheticSpec(width=48, height=32, num_frames=2)
    per_video = 6
    brightness = np.array(
        [
            [render_video(label, np.random.default_rng([label, index]), spec)[0].mean() for index in range(per_video)]
            for label in range(len(CLASS_NAMES))
        ]
    )
    between = brightness.mean(axis=1).std()
    within = brightness.std(axis=1, ddof=1).mean()
    # Without class information the class means scatter like within / sqrt(per_video) ~ 0.4 within.
    assert between < 0.8 * within
    # Translations and rotations start from the same frame for the same generator state.
    first_frames = [render_video(label, np.random.default_rng(11), spec)[0] for label in range(10)]
    assert all(np.array_equal(first_frames[0], frame) for frame in first_frames)


def test_spec_validation() -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        SyntheticSpec(num_classes=10)
    with pytest.raises(ConfigError, match="width"):
        SyntheticSpec(width=47)
    with pytest.raises(ConfigError, match="encoding='h265'"):
        SyntheticSpec(encoding="h265")


def test_command_line_tool(tmp_path: pathlib.Path) -> None:
    command = [sys.executable, str(REPO_ROOT / "tools/make_synthetic.py"), "--out", str(tmp_path / "smoke")]
    done = subprocess.run(command + ["--train-per-class", "1", "--val-per-class", "1"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "20 train / 20 val videos" in done.stdout
    assert len((tmp_path / "smoke" / "train.csv").read_text().splitlines()) == 20
    clash = subprocess.run(command, capture_output=True, text=True)
    assert clash.returncode == 2
    assert clash.stderr.count("\n") == 1 and "--force" in clash.stderr


# ------------------------------------------------------------------------------------------ manifests

def check_manifest(data_dir: pathlib.Path, spec: SyntheticSpec) -> dict:
    """manifest.json is valid, lists every video of the CSVs with its true sha256 and size; returns it."""
    manifest = read_manifest(data_dir)
    assert manifest["kind"] == "synthetic" and manifest["classes"] == list(CLASS_NAMES)
    assert manifest["params"] == json.loads((data_dir / "synthetic_spec.json").read_text())
    listed = {(split, relative, label) for split in ("train", "val")
              for relative, label in read_csv(data_dir / f"{split}.csv")}
    assert {(c["split"], c["path"], c["label_index"]) for c in manifest["clips"]} == listed
    for clip in manifest["clips"]:
        data = (data_dir / clip["path"]).read_bytes()
        assert clip["source_sha256"] == hashlib.sha256(data).hexdigest()
        assert clip["bytes"] == clip["source_bytes"] == len(data)
        assert clip["id"] == clip["path"].removesuffix(".mp4") and clip["source"] == "synthetic"
        assert clip["label"] == CLASS_NAMES[clip["label_index"]]
        assert (clip["frames"], clip["fps"]) == (spec.num_frames, spec.fps)
        assert clip["duration_s"] == pytest.approx(spec.num_frames / spec.fps)
    return manifest


def test_smoke_manifest(tiny_dataset: pathlib.Path) -> None:
    params = check_manifest(tiny_dataset, TINY)["params"]
    assert params == {**dataclasses.asdict(TINY), "generator_version": GENERATOR_VERSION}
    assert params["encoding"] == "smoke"


def test_dataset_from_before_manifests_gets_one(tmp_path: pathlib.Path, tiny_dataset: pathlib.Path) -> None:
    """A complete smoke dataset written before manifests (and the encoding field) existed is upgraded in
    place: its videos and spec file stay as they are, the manifest is the one a fresh generation writes."""
    old = pathlib.Path(shutil.copytree(tiny_dataset, tmp_path / "smoke"))
    (old / MANIFEST).unlink()
    record = json.loads((old / "synthetic_spec.json").read_text())
    del record["encoding"]
    (old / "synthetic_spec.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    stamps = {p: p.stat().st_mtime_ns for p in old.rglob("*") if p.is_file()}

    assert ensure_synthetic_dataset(old, TINY) == old
    assert (old / MANIFEST).read_text() == (tiny_dataset / MANIFEST).read_text()
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smoke"]


# ------------------------------------------------------------------------------------------ kinetics profile

def test_profiles() -> None:
    assert PROFILES["smoke"] == SyntheticSpec()
    kinetics = PROFILES["kinetics"]
    assert (kinetics.width, kinetics.height, kinetics.fps, kinetics.num_frames) == (456, 256, 30, 300)
    assert kinetics.encoding == PREPARED.name == "prepared"
    assert (kinetics.train_per_class, kinetics.val_per_class) == (24, 8)
    assert profile_spec("kinetics", seconds=1, seed=3) == dataclasses.replace(kinetics, num_frames=30, seed=3)
    with pytest.raises(ConfigError, match="at least 2"):
        profile_spec("kinetics", seconds=0.01)
    with pytest.raises(ConfigError, match="unknown synthetic profile 'ucf'"):
        profile_spec("ucf")


def test_render_frames_streams_render_video() -> None:
    spec = dataclasses.replace(TINY, num_frames=5)
    frames = render_frames(7, np.random.default_rng(2), spec)
    np.testing.assert_array_equal(np.stack(list(frames)), render_video(7, np.random.default_rng(2), spec))


def test_kinetics_profile_shape(kinetics_dataset: pathlib.Path) -> None:
    """456x256 H.264 at 30 fps, every frame a keyframe (formats.PREPARED), the manifest covers every video."""
    for relative, _ in read_csv(kinetics_dataset / "val.csv")[::7]:
        with av.open(str(kinetics_dataset / relative)) as container:
            assert len(container.streams.audio) == 0
            stream = container.streams.video[0]
            assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
            assert (stream.width, stream.height, stream.average_rate) == (456, 256, 30)
            packets = [p for p in container.demux(stream) if p.size]
            assert len(packets) == KINETICS_TINY.num_frames
            assert all(p.is_keyframe for p in packets)
        with av.open(str(kinetics_dataset / relative)) as container:
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
            assert np.stack(frames).shape == (KINETICS_TINY.num_frames, 256, 456, 3)
    params = check_manifest(kinetics_dataset, KINETICS_TINY)["params"]
    assert params["format"] == PREPARED.as_dict() and params["format_version"] == FORMAT_VERSION
    assert params["encoding"] == "prepared" and (params["width"], params["height"]) == (456, 256)
    assert len(read_csv(kinetics_dataset / "train.csv")) == len(read_csv(kinetics_dataset / "val.csv")) == 20
    assert not list(kinetics_dataset.parent.glob("*.tmp-*"))


def test_kinetics_fingerprint_is_stable(tmp_path: pathlib.Path, kinetics_dataset: pathlib.Path) -> None:
    """A second generation of the same spec (in-process, the first used a pool) gives the same manifest;
    another seed another fingerprint and other videos."""
    first = read_manifest(kinetics_dataset)
    assert read_manifest(ensure_synthetic_dataset(tmp_path / "again", KINETICS_TINY)) == first
    other = read_manifest(ensure_synthetic_dataset(tmp_path / "seed1", dataclasses.replace(KINETICS_TINY, seed=1),
                                                   workers=2))
    assert other["fingerprint"] != first["fingerprint"]
    assert not {c["source_sha256"] for c in other["clips"]} & {c["source_sha256"] for c in first["clips"]}


def test_workers_must_be_positive(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match="workers=0"):
        ensure_synthetic_dataset(tmp_path / "x", TINY, workers=0)
    assert not list(tmp_path.iterdir())
