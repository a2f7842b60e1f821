"""A manifest.json for the tiny test dataset (tests/conftest.py), written as the prepare tool would."""
from __future__ import annotations

import hashlib
import pathlib

from vmb.data.prepare.manifest import write_manifest

TINY_NUM_CLASSES, TINY_FRAMES, TINY_FPS = 4, 20, 10  # as tests/conftest.py writes the tiny dataset


def write_tiny_manifest(root: pathlib.Path, kind: str = "synthetic") -> dict:
    """Write a manifest.json listing the tiny dataset in `root` as it is (as the prepare tool would); return it."""
    clips = []
    for split in ("train", "val"):
        for line in (root / f"{split}.csv").read_text().split("\n"):
            if line:
                path, label = line.split()
                data = (root / path).read_bytes()
                clips.append({"id": path, "label": f"class{label}", "label_index": int(label), "split": split,
                              "path": path, "source": path, "source_sha256": hashlib.sha256(data).hexdigest(),
                              "source_bytes": len(data), "frames": TINY_FRAMES, "fps": TINY_FPS,
                              "duration_s": TINY_FRAMES / TINY_FPS, "bytes": len(data)})
    return write_manifest(root, kind, {"format": "tiny"}, [f"class{i}" for i in range(TINY_NUM_CLASSES)], clips)
