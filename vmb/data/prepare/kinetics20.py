"""Build Kinetics20 from a Kinetics-400 copy: select the clips, locate them, re-encode them in parallel, record.

`build_kinetics20(k400, out)` is `tools/prepare_kinetics20.py`. It writes into `out`::

    train/<class_folder>/<clip_id>.mp4, val/...   the clips in the prepared format (vmb.data.prepare.formats.PREPARED)
    train.csv, val.csv                            "train/<class_folder>/<clip_id>.mp4 <label_index>" per clip
    classes.txt                                   the 20 classes, one per line, in label order
    manifest.json                                 every clip, its source's sha256 and the dataset fingerprint
    skipped.csv                                   every annotated clip left out, and why
    prepare_progress.jsonl                        one line per finished clip: what makes a rerun resume

A clip is redone only if its source's sha256, the preparation parameters or its output file changed; a run
that is interrupted (Ctrl-C, a kill) leaves no partial clip and resumes where it stopped.
"""
from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
import io
import itertools
import json
import multiprocessing
import os
import signal
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Iterable, TextIO

import av
from tqdm import tqdm

from vmb.data.prepare import k400 as K
from vmb.data.prepare.formats import FORMAT_VERSION, PREPARED, VideoFormat
from vmb.data.prepare.manifest import write_manifest
from vmb.data.prepare.transcode import SCALING, TIME_TOLERANCE, SourceError, transcode
from vmb.files import TEMP_MARK, sha256_file, write_text_atomic
from vmb.errors import DataError

KIND = "kinetics20"
DEFAULT_MIN_FRAMES = 8
DEFAULT_MIN_SECONDS = 1.0
PROGRESS_FILE = "prepare_progress.jsonl"
SKIPPED_FILE = "skipped.csv"
CLASSES_FILE = "classes.txt"
SKIPPED_FIELDS = ("id", "split", "label", "source", "reason", "detail")


@dataclasses.dataclass(frozen=True)
class ClipTask:
    """One clip to prepare (or to confirm unchanged), as sent to a worker process."""

    record: dict  # the clip's identity: split, id, label, label_index, path, source
    source: Path
    output: Path
    previous: dict | None  # this clip's progress record from an earlier run with the same parameters
    fmt: VideoFormat
    min_frames: int
    min_seconds: float


@dataclasses.dataclass
class Summary:
    """What a prepare run produced; `format()` is the summary the command prints."""

    out: Path
    clips: dict[str, int]  # per split
    processed: int  # sources decoded this run (prepared or skipped)
    reused: int
    skipped: collections.Counter  # per reason
    flags: collections.Counter  # kept clips per repair/oddity (see transcode.ClipStats.flags)
    bad_packets: int
    codecs: collections.Counter  # kept clips per source codec
    empty_classes: list[str]
    fingerprint: str
    bytes: int
    seconds: float

    def format(self) -> str:
        def counts(counter: collections.Counter) -> str:
            return ", ".join(f"{key} {n}" for key, n in sorted(counter.items())) or "none"

        lines = [
            f"Kinetics20 in {self.out}: {sum(self.clips.values())} clips "
            f"({', '.join(f'{split} {n}' for split, n in self.clips.items())}), {self.bytes / 1e6:.1f} MB, "
            f"{self.seconds:.1f} s",
            f"  sources processed {self.processed}, unchanged since the last run {self.reused}",
            f"  skipped {sum(self.skipped.values())} (listed in {SKIPPED_FILE}): {counts(self.skipped)}",
            f"  kept with repairs: {counts(self.flags)}; undecodable packets skipped: {self.bad_packets}",
            f"  source codecs: {counts(self.codecs)}",
            f"  fingerprint {self.fingerprint}",
        ]
        if self.empty_classes:
            lines.insert(1, f"  warning: no clip of {len(self.empty_classes)} class(es): "
                            f"{', '.join(self.empty_classes)}")
        return "\n".join(lines)


def prepare_params(fmt: VideoFormat, min_frames: int, min_seconds: float) -> dict:
    """Everything that decides the prepared clips; part of the dataset fingerprint."""
    return {"format": fmt.as_dict(), "format_version": FORMAT_VERSION, "classes": list(K.CLASSES),
            "min_frames": min_frames, "min_seconds": min_seconds, "scaling": SCALING.name.lower(),
            "time_tolerance_s": float(TIME_TOLERANCE)}


def default_workers() -> int:
    """The CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def build_kinetics20(k400: str | os.PathLike, out: str | os.PathLike, workers: int | None = None,
                     fmt: VideoFormat = PREPARED, min_frames: int = DEFAULT_MIN_FRAMES,
                     min_seconds: float = DEFAULT_MIN_SECONDS, progress: bool = True) -> Summary:
    """Prepare Kinetics20 from the Kinetics-400 copy `k400` into `out` (see the module docstring).

    Raises:
        DataError: `k400` is not a Kinetics-400 copy (annotations missing or unreadable), a split ends up
            without any clip, or an output cannot be written.
    """
    started = time.monotonic()
    k400, out = Path(k400), Path(out)
    if not k400.is_dir():
        raise DataError(f"{k400}: Kinetics-400 folder not found (--k400)")
    params = prepare_params(fmt, min_frames, min_seconds)
    digest = _digest(params)
    annotations, skipped = select_annotations(k400)
    sources = K.index_sources(k400, exclude=out)
    previous = _read_progress(out / PROGRESS_FILE, digest)
    tasks = []
    for a in annotations:
        identity = {"split": a.split, "id": a.clip_id, "label": a.label, "label_index": K.CLASSES.index(a.label),
                    "path": f"{a.split}/{K.class_folder(a.label)}/{a.clip_id}.mp4"}
        source = sources.get(a.clip_id)
        if source is None:
            skipped.append(dict(identity, source="", reason="missing",
                                detail=f"no {a.clip_id}.mp4/.webm/.mkv under {k400}"))
            continue
        identity["source"] = source.relative_to(k400).as_posix()
        old = previous.get((a.split, a.clip_id))
        tasks.append(ClipTask(identity, source, out / identity["path"],
                              old if old is not None and old["label"] == a.label else None,
                              fmt, min_frames, min_seconds))
    for split in K.SPLITS:
        if not any(task.record["split"] == split for task in tasks):
            raise DataError(f"{k400}: no {split} clip of the Kinetics20 classes found; is --k400 the CVDF "
                            "Kinetics-400 copy (annotations/ and the clip files)?")
    out.mkdir(parents=True, exist_ok=True)
    records, reused = _run(tasks, out, workers or default_workers(), digest, progress)
    write_text_atomic(out / PROGRESS_FILE, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    clips = [r for r in records if r["status"] == "ok"]
    skipped += [{k: r[k] for k in SKIPPED_FIELDS} for r in records if r["status"] == "skipped"]
    _write_skipped(out / SKIPPED_FILE, skipped)
    for split in K.SPLITS:
        if not any(clip["split"] == split for clip in clips):
            raise DataError(f"{k400}: no usable {split} clip of the Kinetics20 classes (see {out / SKIPPED_FILE})")
    for split in K.SPLITS:
        lines = sorted(f"{c['path']} {c['label_index']}\n" for c in clips if c["split"] == split)
        write_text_atomic(out / f"{split}.csv", "".join(lines))
    write_text_atomic(out / CLASSES_FILE, "".join(f"{name}\n" for name in K.CLASSES))
    manifest = write_manifest(out, KIND, params, list(K.CLASSES), clips)
    present = {clip["label"] for clip in clips}
    return Summary(
        out=out, clips={split: sum(c["split"] == split for c in clips) for split in K.SPLITS},
        processed=len(records) - reused, reused=reused,
        skipped=collections.Counter(s["reason"] for s in skipped),
        flags=collections.Counter(flag for c in clips for flag in c["flags"]),
        bad_packets=sum(c["bad_packets"] for c in clips),
        codecs=collections.Counter(c["codec"] for c in clips),
        empty_classes=[name for name in K.CLASSES if name not in present],
        fingerprint=manifest["fingerprint"], bytes=sum(c["bytes"] for c in clips),
        seconds=time.monotonic() - started)


def select_annotations(k400: Path) -> tuple[list[K.Annotation], list[dict]]:
    """The annotated Kinetics20 clips of both splits (first occurrence of each id), and the skipped rows
    (malformed rows of any class, repeated ids of the 20 classes)."""
    selected, skipped, seen = [], [], set()
    for split in K.SPLITS:
        path = K.annotation_path(k400, split)
        rows, malformed = K.read_annotations(path, split)
        where = path.relative_to(k400).as_posix()
        skipped += [{"id": "", "split": split, "label": "", "source": f"{where}:{line}", "reason": "malformed row",
                     "detail": why} for line, why in malformed]
        for a in rows:
            if a.label not in K.CLASSES:
                continue
            if a.clip_id in seen:
                skipped.append({"id": a.clip_id, "split": split, "label": a.label, "source": f"{where}:{a.line}",
                                "reason": "duplicate id", "detail": "the id's first row is kept"})
                continue
            seen.add(a.clip_id)
            selected.append(a)
    return selected, skipped


def prepare_clip(task: ClipTask) -> tuple[dict, bool]:
    """Prepare one clip in a worker: (its progress record, whether the previous run's output was kept).

    The output is kept if the source's sha256 matches the previous record and the output file still has the
    recorded size (or the previous run skipped this same source).
    """
    try:
        sha256, size = sha256_file(task.source)
    except OSError as exc:
        return dict(task.record, source_sha256="", source_bytes=0, status="skipped", reason="unreadable",
                    detail=exc.strerror or str(exc)), False
    record = dict(task.record, source_sha256=sha256, source_bytes=size)
    old = task.previous
    if old is not None and old["source_sha256"] == sha256 and (
            old["status"] == "skipped" or _file_size(task.output) == old["bytes"]):
        return dict(old, **record), True
    task.output.parent.mkdir(parents=True, exist_ok=True)
    try:
        stats = transcode(task.source, task.output, task.fmt, task.min_frames, task.min_seconds)
    except SourceError as exc:
        return dict(record, status="skipped", reason=exc.reason, detail=exc.detail), False
    except (OSError, av.FFmpegError) as exc:  # transcode handles the source's errors: these are the output's
        raise DataError(f"{task.output}: cannot write the prepared clip ({exc}); check free space and "
                        "permissions") from None
    return dict(record, status="ok", frames=stats.frames, fps=task.fmt.fps,
                duration_s=round(stats.frames / task.fmt.fps, 6), bytes=task.output.stat().st_size,
                codec=stats.codec, flags=stats.flags(), bad_packets=stats.bad_packets), False


def remove_temp_files(out: Path) -> None:
    """Delete the partial clips that interrupted runs left in `out`."""
    for split in K.SPLITS:
        for path in (out / split).glob(f"*/.*{TEMP_MARK}*"):
            path.unlink(missing_ok=True)


def _run(tasks: list[ClipTask], out: Path, workers: int, digest: str, progress: bool) -> tuple[list[dict], int]:
    """Run `prepare_clip` over `tasks` in `workers` processes, appending each new record to the progress file.

    Returns the records (in task order) and how many were reused. At most one task per worker is handed out at
    a time, so that on Ctrl-C (or an error) only the clips in progress finish before the run stops; no partial
    clip is left behind.
    """
    records: dict[int, dict] = {}
    reused = 0
    remove_temp_files(out)
    todo = iter(enumerate(tasks))
    executor = ProcessPoolExecutor(max(1, min(workers, len(tasks))), initializer=_ignore_sigint,
                                   mp_context=multiprocessing.get_context("forkserver"))
    running = {}  # future -> task index
    try:
        for index, task in itertools.islice(todo, workers):
            running[executor.submit(prepare_clip, task)] = index
        with open(out / PROGRESS_FILE, "a") as log, \
                tqdm(total=len(tasks), unit="clip", desc="prepare", disable=not progress) as bar:
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    record, was_reused = future.result()
                    index = running.pop(future)
                    for next_index, task in itertools.islice(todo, 1):
                        running[executor.submit(prepare_clip, task)] = next_index
                    record["params"] = digest
                    if not was_reused:
                        _append_progress(log, record)
                    records[index] = record
                    reused += was_reused
                    bar.update()
    except BrokenProcessPool:
        suspects = ", ".join(tasks[i].record["source"] for i in sorted(running.values()))
        raise DataError(f"{out}: a worker process died (killed, out of memory, or a crash decoding one of: "
                        f"{suspects}); rerun the same command to resume") from None
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        remove_temp_files(out)
    return [records[i] for i in range(len(tasks))], reused


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the main process, which stops them and removes their partial clips."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _append_progress(log: TextIO, record: dict) -> None:
    """Append one finished clip to the progress file as one line, flushed at once."""
    log.write(json.dumps(record, sort_keys=True) + "\n")
    log.flush()


def _read_progress(path: Path, digest: str) -> dict[tuple[str, str], dict]:
    """The records of earlier runs with the same parameters, by (split, id); the last line of a clip wins and
    a line cut by a kill is ignored."""
    records: dict[tuple[str, str], dict] = {}
    if not path.is_file():
        return records
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("params") == digest:
            records[(record["split"], record["id"])] = record
    return records


def _digest(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def _file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _write_skipped(path: Path, skipped: Iterable[dict]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, SKIPPED_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(skipped, key=lambda s: (s["split"], s["id"], s["source"])))
    write_text_atomic(path, text.getvalue())
