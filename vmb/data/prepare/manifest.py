"""`manifest.json`: what a prepared (or generated) dataset holds, and its fingerprint.

Written by `tools/prepare_kinetics20.py` (Kinetics20) and the synthetic generators, read by the trainer's
pre-flight and the scorer. The fingerprint identifies the dataset by its *sources* (ids, labels, splits,
source sha256) plus the preparation parameters, not by the prepared bytes: x264's output differs between
CPUs, so two vendors preparing the same CVDF copy get the same fingerprint.

Layout::

    {"manifest_version": 1, "kind": "kinetics20" | "synthetic", "fingerprint": "sha256:...",
     "params": {...everything that decides the prepared bytes, incl. format and format_version...},
     "classes": ["abseiling", ...],
     "clips": [{"id", "label", "label_index", "split", "path", "source", "source_sha256", "source_bytes",
                "frames", "fps", "duration_s", "bytes"}, ...]}
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Mapping

from vmb.errors import DataError
from vmb.files import write_text_atomic

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
CLIP_FIELDS = ("id", "label", "label_index", "split", "path", "source", "source_sha256", "source_bytes",
               "frames", "fps", "duration_s", "bytes")
_IDENTITY_FIELDS = ("split", "id", "label", "source_sha256")


def fingerprint(clips: Iterable[Mapping], params: Mapping) -> str:
    """sha256 over the preparation parameters and the sorted (split, id, label, source_sha256) of every clip."""
    digest = hashlib.sha256()
    digest.update(json.dumps(params, sort_keys=True, separators=(",", ":")).encode())
    for identity in sorted(tuple(str(clip[k]) for k in _IDENTITY_FIELDS) for clip in clips):
        digest.update(("\n" + "\t".join(identity)).encode())
    return "sha256:" + digest.hexdigest()


def write_manifest(data_dir: str | os.PathLike, kind: str, params: Mapping, classes: list[str],
                   clips: list[Mapping]) -> dict:
    """Write `data_dir/manifest.json` atomically (clips sorted by split then id); return what was written."""
    ordered = sorted(({k: clip[k] for k in CLIP_FIELDS} for clip in clips), key=lambda c: (c["split"], c["id"]))
    manifest = {"manifest_version": MANIFEST_VERSION, "kind": kind, "fingerprint": fingerprint(ordered, params),
                "params": dict(params), "classes": list(classes), "clips": ordered}
    path = Path(data_dir) / MANIFEST
    write_text_atomic(path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def read_manifest(data_dir: str | os.PathLike) -> dict:
    """Load and check `data_dir/manifest.json`; the stored fingerprint must match its content.

    Raises:
        DataError: missing, unreadable or inconsistent manifest (one line naming the file).
    """
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        raise DataError(f"{path}: no manifest; prepare the data with tools/prepare_kinetics20.py "
                        "(or tools/make_synthetic.py)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable manifest ({exc}); prepare the data again") from None
    if not isinstance(manifest, dict) or manifest.get("manifest_version") != MANIFEST_VERSION:
        raise DataError(f"{path}: not a version-{MANIFEST_VERSION} VMB manifest; prepare the data again")
    try:
        clips, params = manifest["clips"], manifest["params"]
        for clip in clips:
            missing = [k for k in CLIP_FIELDS if k not in clip]
            if missing:
                raise DataError(f"{path}: clip {clip.get('id')!r} lacks {', '.join(missing)}; prepare the data again")
        recomputed = fingerprint(clips, params)
    except (KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}: malformed manifest ({type(exc).__name__}: {exc}); prepare the data again") from None
    if recomputed != manifest.get("fingerprint"):
        raise DataError(f"{path}: stored fingerprint does not match the manifest's content (edited?); "
                        "prepare the data again")
    return manifest
