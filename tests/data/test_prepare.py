"""Tests of tools/prepare_kinetics20.py (vmb/data/prepare/kinetics20.py, k400.py, transcode.py) on a fake
Kinetics-400 copy.

Most tests share one preparation of the fake copy (`prepared`) at a short side of 64 pixels instead of 256, so
that the whole file stays fast; one test runs the command itself with the benchmark's format.
"""
from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
import json
import re
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from fake_k400 import (AV1_ENCODER, DUPLICATE_ROWS, FAKE_CLIPS, MALFORMED_ROWS, ROTATION_DEGREES, VFR_LEVEL_STEP,
                       VFR_TIMES_MS, FakeClip, write_annotations, write_clip, write_fake_k400)
from vmb.cli import prepare_kinetics20
from vmb.data.prepare import kinetics20 as prepare
from vmb.data.prepare.formats import FORMAT_VERSION, PREPARED
from vmb.data.prepare.k400 import CLASSES, class_folder, index_sources, read_annotations
from vmb.data.kinetics import ClipSpec, KineticsDataset, read_split_csv
from vmb.data.prepare.manifest import fingerprint, read_manifest, write_manifest
from vmb.data.prepare.transcode import constant_rate, rotate_yuv420p
from vmb.files import TEMP_MARK
from vmb.errors import DataError

REPO_ROOT = Path(__file__).resolve().parents[2]
SMALL = dataclasses.replace(PREPARED, short_side=64)  # the prepared format at a test-sized short side
WORKERS = 2


def build(k400: Path, out: Path, **kwargs) -> prepare.Summary:
    return prepare.build_kinetics20(k400, out, WORKERS, fmt=SMALL, progress=False, **kwargs)


@dataclasses.dataclass
class Prepared:
    k400: Path
    out: Path
    clips: tuple[FakeClip, ...]
    summary: prepare.Summary

    def kept(self) -> list[FakeClip]:
        return [c for c in self.clips if c.expect == "ok"]

    def records(self) -> dict[str, dict]:
        lines = (self.out / prepare.PROGRESS_FILE).read_text().splitlines()
        return {record["id"]: record for record in map(json.loads, lines)}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    """The fake copy, prepared once into a folder *inside* it (the source walk must skip that folder)."""
    k400 = tmp_path_factory.mktemp("fake") / "k400"
    clips = write_fake_k400(k400)
    out = k400 / "prepared"
    return Prepared(k400, out, clips, build(k400, out))


@pytest.fixture
def copy_of(tmp_path: Path):
    """`copy_of(prepared, with_output)`: a private copy of the fake copy (and of its prepared output)."""

    def copy(p: Prepared, with_output: bool = True) -> Prepared:
        k400 = tmp_path / "k400"
        shutil.copytree(p.k400, k400, ignore=None if with_output else shutil.ignore_patterns("prepared"))
        return Prepared(k400, k400 / "prepared", p.clips, p.summary)

    return copy


def decode_all(path: Path) -> tuple[av.video.stream.VideoStream, list[av.VideoFrame]]:
    with av.open(str(path)) as container:
        assert not container.streams.audio
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        return stream, frames


# ---------------------------------------------------------------- the classes and the annotations


def test_classes_file_is_the_first_20_kinetics400_classes():
    assert (REPO_ROOT / "data/kinetics20/classes.txt").read_text().splitlines() == list(CLASSES)
    assert len(CLASSES) == 20 and list(CLASSES) == sorted(CLASSES)
    assert CLASSES[0] == "abseiling" and CLASSES[-1] == "bench pressing" and "bee keeping" in CLASSES


def test_annotations_quoted_labels_extra_columns_and_malformed_rows(tmp_path: Path):
    path = tmp_path / "train.csv"
    path.write_text("\ufefflabel, youtube_id ,time_start,time_end,split,is_cc\n"  # BOM, spaces in the header
                    '"air drumming",-abc_DEF-12,3,13,train,0\n'
                    '"passing American football (in game)",xyz,0,10,train,1\n'
                    "abseiling,ok,1,11,train,0,surplus\n"  # a field more than the header
                    "abseiling,ok\n"  # fields missing
                    "abseiling,bad id,0,10,train,0\n"
                    "abseiling,x,ten,20,train,0\n"
                    "abseiling,x,10,10,train,0\n"
                    ",x,0,10,train,0\n")
    rows, malformed = read_annotations(path, "val")
    assert [(a.label, a.youtube_id, a.clip_id, a.split, a.line) for a in rows] == [
        ("air drumming", "-abc_DEF-12", "-abc_DEF-12_000003_000013", "val", 2),
        ("passing American football (in game)", "xyz", "xyz_000000_000010", "val", 3)]
    assert [line for line, _ in malformed] == [4, 5, 6, 7, 8, 9]
    assert "fewer fields" in malformed[1][1] and "not integers" in malformed[3][1] and "empty label" in malformed[5][1]


@pytest.mark.parametrize("content, message", [
    (b"youtube_id,time_start,time_end,split\nabc,0,10,train\n", "header lacks column(s) label"),
    ("label,youtube_id,time_start,time_end\nt\xe9l\xe9,abc,0,10\n".encode("latin-1"), "not UTF-8"),
])
def test_annotation_file_errors_are_one_line(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "val.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=re.escape(message)) as info:
        read_annotations(path, "val")
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_sources_are_indexed_by_stem_once(tmp_path: Path):
    for relative in ("train/a_000000_000010.mp4", "train/b_000001_000011.webm", "val/bee keeping/c_000000_000010.mkv",
                     "z/a_000000_000010.mkv", "train/.d_000000_000010.mp4", "train/e.txt",
                     "out/train/x/b_000001_000011.mp4"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"")
    index = index_sources(tmp_path, exclude=tmp_path / "out")
    assert {stem: path.relative_to(tmp_path).as_posix() for stem, path in index.items()} == {
        "a_000000_000010": "train/a_000000_000010.mp4",  # first in sorted path order
        "b_000001_000011": "train/b_000001_000011.webm",
        "c_000000_000010": "val/bee keeping/c_000000_000010.mkv"}


# ---------------------------------------------------------------- frame timing and rotation


def test_constant_rate_shows_the_frame_shown_at_each_instant():
    def resample(starts_ms: list[int], last_ms: int, fps: int = 30) -> list[int]:
        ends = [Fraction(t, 1000) for t in starts_ms[1:] + [starts_ms[-1] + last_ms]]
        return list(constant_rate(zip(ends, range(len(starts_ms))), fps))

    assert resample([0, 100, 200], 100, fps=10) == [0, 1, 2]
    assert resample([0, 67, 133, 200], 67) == [0, 0, 1, 1, 2, 2, 3, 3]  # 15 fps in whole ms: up to 1 ms late counts
    assert resample([0, 50, 60, 300], 20) == [0, 0, 2, 2, 2, 2, 2, 2, 2, 3]  # frame 1 falls between instants
    assert resample([40, 80], 40) == [0, 0, 0, 1]  # instants before the first frame show it
    assert list(constant_rate([], 30)) == []


def test_rotate_yuv420p_turns_counterclockwise():
    rgb = np.zeros((6, 8, 3), dtype=np.uint8)
    rgb[:2, :2] = 255  # top-left marker
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    turned = rotate_yuv420p(frame, 1)
    assert (turned.width, turned.height) == (6, 8)
    luma = turned.to_ndarray()[:8]
    assert luma[-2:, :2].min() > 200 and luma[:2, :2].max() < 100  # top-left went to bottom-left
    assert np.array_equal(rotate_yuv420p(rotate_yuv420p(turned, 2), 1).to_ndarray(), frame.to_ndarray())


# ---------------------------------------------------------------- one preparation of the fake copy


def test_summary_counts_every_rule(prepared: Prepared):
    s = prepared.summary
    kept = prepared.kept()
    assert s.clips == {split: sum(c.split == split for c in kept) for split in ("train", "val")}
    assert s.processed == sum(c.expect != "not in Kinetics20" and c.kind != "missing" for c in prepared.clips)
    assert s.reused == 0
    expected_skips = collections.Counter(c.expect for c in prepared.clips
                                         if c.expect not in ("ok", "not in Kinetics20"))
    expected_skips.update({"duplicate id": DUPLICATE_ROWS, "malformed row": sum(MALFORMED_ROWS.values())})
    assert s.skipped == expected_skips
    for flag in ("rotated", "odd frame size", "truncated", "undecodable packets"):
        assert s.flags[flag] == 1, flag
    assert s.flags["variable frame rate"] >= 1  # the VFR clip (the corrupt one's lost frames may count too)
    assert s.bad_packets >= 1
    assert s.codecs == {"h264": sum(c.kind not in ("vp9", "av1") for c in kept),
                        "vp9": sum(c.kind == "vp9" for c in kept), **({"av1": 1} if AV1_ENCODER else {})}
    assert s.empty_classes == [name for name in CLASSES if name not in {c.label for c in kept}]
    assert s.bytes == sum(p.stat().st_size for p in prepared.out.glob("*/*/*.mp4"))
    text = s.format()
    assert s.fingerprint in text and "unreadable 1" in text and "rotated 1" in text


def test_each_clip_gets_its_expected_outcome(prepared: Prepared):
    records = prepared.records()
    for clip in prepared.clips:
        if clip.expect in ("not in Kinetics20", "missing"):
            assert clip.clip_id not in records
            continue
        record = records[clip.clip_id]
        assert record["status"] == ("ok" if clip.expect == "ok" else "skipped"), clip
        if clip.expect == "ok":
            assert set(clip.flags) <= set(record["flags"]), clip
            if clip.kind in ("h264", "vp9", "av1") and not clip.flags:
                assert record["flags"] == [], clip
        else:
            assert record["reason"] == clip.expect, clip
    assert records["corrupt-001_000000_000010"]["bad_packets"] >= 1
    assert records["corrupt-001_000000_000010"]["frames"] == 60  # 2 s at 30 fps: the gap is held, not cut
    assert 30 <= records["truncmkv-001_000000_000010"]["frames"] < 90  # 3 s cut to what decodes


def test_manifest_csvs_and_skipped_report(prepared: Prepared):
    out = prepared.out
    manifest = read_manifest(out)
    assert manifest["kind"] == "kinetics20" and manifest["classes"] == list(CLASSES)
    assert manifest["params"] == prepare.prepare_params(SMALL, prepare.DEFAULT_MIN_FRAMES, prepare.DEFAULT_MIN_SECONDS)
    assert manifest["params"]["format"] == SMALL.as_dict() and manifest["params"]["format_version"] == FORMAT_VERSION
    assert manifest["fingerprint"] == prepared.summary.fingerprint
    by_id = {c.clip_id: c for c in prepared.kept()}
    assert sorted(clip["id"] for clip in manifest["clips"]) == sorted(by_id)
    for clip in manifest["clips"]:
        fake = by_id[clip["id"]]
        source = prepared.k400 / clip["source"]
        assert clip["source"] == fake.relative_path  # relative to --k400, never inside the output folder
        assert clip["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
        assert clip["source_bytes"] == source.stat().st_size
        assert (clip["split"], clip["label"]) == (fake.split, fake.label)
        assert clip["label_index"] == CLASSES.index(fake.label)
        assert clip["path"] == f"{fake.split}/{class_folder(fake.label)}/{fake.clip_id}.mp4" and " " not in clip["path"]
        assert clip["bytes"] == (out / clip["path"]).stat().st_size
        assert clip["fps"] == 30 and clip["duration_s"] == pytest.approx(clip["frames"] / 30)
    for split in ("train", "val"):
        listed = read_split_csv(out / f"{split}.csv", len(CLASSES))
        assert sorted(listed) == sorted((c["path"], c["label_index"]) for c in manifest["clips"] if c["split"] == split)
    assert (out / "classes.txt").read_text().splitlines() == list(CLASSES)
    with open(out / prepare.SKIPPED_FILE, newline="") as handle:
        skipped = list(csv.DictReader(handle))
    assert collections.Counter(row["reason"] for row in skipped) == prepared.summary.skipped
    assert {(row["id"], row["reason"]) for row in skipped if row["reason"] not in ("malformed row", "duplicate id")} \
        == {(c.clip_id, c.expect) for c in prepared.clips if c.expect not in ("ok", "not in Kinetics20")}
    assert not list(out.rglob(f"*{TEMP_MARK}*"))


def test_prepared_clips_are_all_intra_h264_at_30_fps(prepared: Prepared):
    manifest = read_manifest(prepared.out)
    for clip in manifest["clips"]:
        stream, frames = decode_all(prepared.out / clip["path"])
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == 30 and len(frames) == clip["frames"]
        assert [f.pts * stream.time_base for f in frames] == [Fraction(k, 30) for k in range(len(frames))]
        assert all(f.key_frame for f in frames)
        assert min(stream.width, stream.height) == SMALL.short_side and stream.width % 2 == stream.height % 2 == 0
    paths = {c["id"]: c["path"] for c in manifest["clips"]}
    with av.open(str(prepared.out / paths["h264mp4-002_000000_000010"])) as container:  # 160x120 source
        assert (container.streams.video[0].width, container.streams.video[0].height) == (86, 64)


def test_rotated_source_is_turned_upright(prepared: Prepared):
    assert ROTATION_DEGREES == 90  # the display shows the stored frame turned 90 degrees counterclockwise
    stream, frames = decode_all(prepared.out / "train/air_drumming/rotated-001_000000_000010.mp4")
    assert (stream.width, stream.height) == (64, 86)  # a 64x48 landscape source, shown as portrait
    assert frames[0].rotation == 0  # the output carries no rotation of its own
    luma = frames[0].to_ndarray(format="gray")
    # The white marker, stored in the top-left corner, shows at the bottom left.
    assert luma[-8:, :8].mean() > 230
    assert max(luma[:8, :8].mean(), luma[:8, -8:].mean(), luma[-8:, -8:].mean()) < 200


def test_variable_frame_rate_becomes_constant(prepared: Prepared):
    stream, frames = decode_all(prepared.out / "train/air_drumming/vfrmp4--001_000000_000010.mp4")
    assert len(frames) >= 30 * VFR_TIMES_MS[-1] // 1000
    for k, frame in enumerate(frames):
        shown = max(i for i, t in enumerate(VFR_TIMES_MS) if t <= 1000 * k / 30 + 1)
        level = frame.to_ndarray(format="gray")[16:48, 16:48].mean()
        assert abs(level - VFR_LEVEL_STEP * shown) < 4, (k, shown, level)


def test_av1_source_is_prepared(prepared: Prepared):
    if AV1_ENCODER is None:
        pytest.skip("this PyAV build has no AV1 encoder (libsvtav1, libaom-av1, librav1e) to write a test clip")
    record = prepared.records()["av1mp4--001_000000_000010"]
    assert record["status"] == "ok" and record["codec"] == "av1" and record["frames"] == 60


def test_trainer_dataset_loads_the_output(prepared: Prepared):
    spec = ClipSpec(num_frames=4, sampling_rate=2, target_fps=30, train_jitter_scales=(64, 72), train_crop_size=48,
                    test_crop_size=56)
    train = KineticsDataset(prepared.out, "train", len(CLASSES), spec, train=True)
    val = KineticsDataset(prepared.out, "val", len(CLASSES), spec, train=False)
    assert len(train) == prepared.summary.clips["train"] and len(val) == prepared.summary.clips["val"]
    clip, label, failures, _ = train[0, 0]
    assert tuple(clip.shape) == (3, 4, 48, 48) and failures == 0
    for index in range(len(val)):
        clip, label, *_ = val[0, index]
        assert tuple(clip.shape) == (3, 4, 56, 56) and 0 <= label < len(CLASSES)


# ---------------------------------------------------------------- reruns, interruptions, fingerprints


def test_rerun_redoes_nothing(prepared: Prepared, copy_of):
    copy = copy_of(prepared)
    summary = build(copy.k400, copy.out)
    assert summary.processed == 0 and summary.reused == prepared.summary.processed
    assert summary.fingerprint == prepared.summary.fingerprint
    assert read_manifest(copy.out)["clips"] == read_manifest(prepared.out)["clips"]


def test_interrupted_run_resumes(prepared: Prepared, copy_of, monkeypatch: pytest.MonkeyPatch):
    copy = copy_of(prepared, with_output=False)
    append = prepare._append_progress
    calls = []

    def interrupt_after_three(log, record):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(record["id"])
        append(log, record)

    monkeypatch.setattr(prepare, "_append_progress", interrupt_after_three)
    with pytest.raises(KeyboardInterrupt):
        build(copy.k400, copy.out)
    monkeypatch.undo()
    assert not list(copy.out.rglob(f"*{TEMP_MARK}*")) and not (copy.out / "manifest.json").exists()
    assert [json.loads(line)["id"] for line in (copy.out / prepare.PROGRESS_FILE).read_text().splitlines()] == calls
    # A kill leaves a partial clip behind, and a cut last line in the progress file: the rerun ignores both.
    stray = copy.out / "train" / "abseiling" / f".h264mp4-001_000000_000010.mp4{TEMP_MARK}999"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"partial")
    with open(copy.out / prepare.PROGRESS_FILE, "a") as log:
        log.write('{"id": "cut')
    summary = build(copy.k400, copy.out)
    assert summary.reused == 3 and summary.processed == prepared.summary.processed - 3
    assert summary.fingerprint == prepared.summary.fingerprint and not stray.exists()


def test_fingerprint_ignores_prepared_bytes(prepared: Prepared, copy_of, tmp_path: Path):
    manifest = read_manifest(prepared.out)
    # Another machine's x264 writes other bytes: same sources, same parameters, same fingerprint.
    other = [dict(clip, bytes=clip["bytes"] + 1, frames=clip["frames"] + 1) for clip in manifest["clips"]]
    assert write_manifest(tmp_path, "kinetics20", manifest["params"], CLASSES, other)["fingerprint"] \
        == manifest["fingerprint"]
    assert fingerprint(other, dict(manifest["params"], min_frames=9)) != manifest["fingerprint"]
    # A damaged output is redone, bit for bit (one encoder thread), and the fingerprint stays.
    copy = copy_of(prepared)
    damaged = copy.out / manifest["clips"][0]["path"]
    original = damaged.read_bytes()
    damaged.write_bytes(original[:100])
    summary = build(copy.k400, copy.out)
    assert summary.processed == 1 and damaged.read_bytes() == original
    assert summary.fingerprint == manifest["fingerprint"]


def test_fingerprint_follows_sources_and_parameters(prepared: Prepared, copy_of):
    copy = copy_of(prepared)
    changed = next(c for c in prepared.clips if c.clip_id == "h264mp4-001_000000_000010")
    write_clip(copy.k400, changed, seed=1234)  # other content under the same name
    summary = build(copy.k400, copy.out)
    assert summary.processed == 1 and summary.fingerprint != prepared.summary.fingerprint
    # New parameters redo everything: a lower minimum length keeps the 0.53 s clip.
    relaxed = build(copy.k400, copy.out, min_seconds=0.5)
    assert relaxed.processed == prepared.summary.processed and relaxed.reused == 0
    assert "too short" not in relaxed.skipped and relaxed.clips["train"] == summary.clips["train"] + 1
    assert len({relaxed.fingerprint, summary.fingerprint, prepared.summary.fingerprint}) == 3


# ---------------------------------------------------------------- the command


def test_command_prepares_the_benchmark_format(tmp_path: Path, capsys: pytest.CaptureFixture):
    clips = tuple(c for c in FAKE_CLIPS if c.clip_id in ("h264mp4-001_000000_000010", "vp9webm-101_000000_000010"))
    write_fake_k400(tmp_path / "k400", clips)
    out = tmp_path / "kinetics20"
    assert prepare_kinetics20.main(["--k400", str(tmp_path / "k400"), "--out", str(out), "--workers", "1"]) == 0
    manifest = read_manifest(out)
    assert manifest["params"]["format"] == PREPARED.as_dict()
    assert f"fingerprint {manifest['fingerprint']}" in capsys.readouterr().out
    for clip in manifest["clips"]:
        stream, frames = decode_all(out / clip["path"])
        assert (stream.width, stream.height) == (342, 256) and stream.average_rate == 30 and len(frames) == 60


@pytest.mark.parametrize("case, message", [
    ("no copy", "Kinetics-400 folder not found"),
    ("no annotations", "annotations/train.csv: annotation file not found"),
    ("bad header", "val.csv: header lacks column(s) time_end"),
    ("not utf-8", "train.csv: not UTF-8 text"),
    ("no clips", "no train clip of the Kinetics20 classes found"),
])
def test_command_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, case: str, message: str):
    k400 = tmp_path / "k400"
    if case != "no copy":
        k400.mkdir()
    if case not in ("no copy", "no annotations"):
        write_annotations(k400, tuple(c for c in FAKE_CLIPS if c.kind == "h264"))  # rows, but no clip files
    if case == "bad header":
        (k400 / "annotations/val.csv").write_text("youtube_id,label,time_start,split\nabc,yoga,0,val\n")
    if case == "not utf-8":
        (k400 / "annotations/train.csv").write_bytes(b"label,youtube_id,time_start,time_end\ncaf\xe9,abc,0,10\n")
    status = prepare_kinetics20.main(["--k400", str(k400), "--out", str(tmp_path / "out"), "--workers", "1"])
    err = capsys.readouterr().err
    assert status == 2 and message in err and err.startswith("error: ") and err.count("\n") == 1, err
