"""RandAugment + erasing applied to a training batch: the per-clip torchvision path, the batched
vmb.data.augment.apply_clip_augment and Kornia's batched per-sample ops, side by side on the CPU.

    python benchmarks/randaugment.py [--clips 8] [--frames 16] [--size 224] [--batches 4] [--rounds 5]

Draws `--batches` batches of parameters with draw_clip_augment (MViT-B's "rand-m7-n4-mstd0.5" and erasing
0.25 by default) for `--clips` random uint8 clips of 3 x frames x size x size, then times, in interleaved
rounds (each path once per round, over the same batches), (a) the previous per-clip, per-op torchvision
kernels (tests/data/randaugment_reference.py), (b) apply_clip_augment, (c) the same grouping by op with
Kornia's batched per-sample kernels on float images in [0, 1] where Kornia has an equivalent (warp_affine with
per-clip forward matrices; PIL-style brightness, saturation, contrast, sharpness, posterize, solarize,
min-max normalisation for AutoContrast, equalize). It prints the median time per batch and its ratio to (a),
and how far each path's output is from (a)'s on the first batch. Kornia is optional: without it that row
is skipped. One intra-op thread by default (`--threads`), as the test suite runs.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from vmb.data import augment as A

REPO_ROOT = Path(__file__).resolve().parents[1]


def _load_reference() -> Callable:
    """The previous per-clip implementation, kept as the tests' reference (tests/data/randaugment_reference.py),
    loaded from its file."""
    spec = importlib.util.spec_from_file_location("randaugment_reference",
                                                  REPO_ROOT / "tests" / "data" / "randaugment_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reference_apply_clip_augment


reference_apply_clip_augment = _load_reference()

Apply = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def kornia_apply() -> Apply | None:
    """A batched apply with Kornia's per-sample kernels, grouped by op per slot as apply_clip_augment groups
    them (its plan gives the groups), or None without Kornia."""
    try:
        import kornia
    except ImportError:
        return None
    enhance, warp_affine = kornia.enhance, kornia.geometry.transform.warp_affine

    def frames(x: torch.Tensor) -> torch.Tensor:  # (n, C, T, H, W) -> (n * T, C, H, W): Kornia's colour layout
        n, c, t, h, w = x.shape
        return x.transpose(1, 2).reshape(n * t, c, h, w)

    def clips_of(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = like.shape
        return y.view(n, t, c, h, w).transpose(1, 2)

    def forward_matrix(name: str, m: float, h: int, w: int) -> list[list[float]]:
        """torchvision's inverse matrix (centred coordinates) as the forward one in pixel indices."""
        inverse = np.array(A._inverse_affine(name, m, h, w) + [0.0, 0.0, 1.0]).reshape(3, 3)
        centre = np.array([[1.0, 0.0, (w - 1) / 2], [0.0, 1.0, (h - 1) / 2], [0.0, 0.0, 1.0]])
        return np.linalg.inv(centre @ inverse @ np.linalg.inv(centre))[:2].tolist()

    def colour(name: str, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        t = x.shape[2]
        f = frames(x)
        per_frame = m.repeat_interleave(t)
        if name == "Brightness":
            y = enhance.adjust_contrast(f, 1.0 + per_frame)  # Kornia's "contrast" multiplies, as PIL's brightness
        elif name == "Color":
            y = enhance.adjust_saturation_with_gray_subtraction(f, 1.0 + per_frame)
        elif name == "Contrast":
            y = enhance.adjust_contrast_with_mean_subtraction(f, 1.0 + per_frame)
        elif name == "Sharpness":
            y = enhance.sharpness(f, 1.0 + per_frame)
        elif name == "Posterize":
            y = enhance.posterize(f, (8 - per_frame).round().long())
        elif name == "Solarize":
            y = enhance.solarize(f, 1.0 - per_frame)
        elif name == "AutoContrast":
            y = enhance.normalize_min_max(f)
        else:
            y = enhance.equalize(f)
        return clips_of(y, x)

    def apply(clips: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        c, t, h, w = clips.shape[1:]
        num_ops = (params.shape[1] - 6) // 4
        rows = params.tolist()
        x = clips.float().div_(255)
        for k in range(num_ops):
            groups: dict[str, list[tuple[int, str, float]]] = {}
            for clip, row in enumerate(rows):
                applied, op, level, negated = row[4 * k:4 * k + 4]
                name = A.OP_NAMES[op]
                if applied and name != "Identity":
                    kind = "affine" if name in A._AFFINE_OPS else name
                    groups.setdefault(kind, []).append((clip, name, A.op_magnitude(op, level, bool(negated), h, w)))
            for kind, members in groups.items():
                index = torch.tensor([clip for clip, _, _ in members])
                group = x.index_select(0, index)
                if kind == "affine":
                    matrices = torch.tensor([forward_matrix(name, m, h, w) for _, name, m in members])
                    out = warp_affine(group.reshape(len(members), c * t, h, w), matrices, (h, w), mode="nearest",
                                      padding_mode="zeros", align_corners=True).view_as(group)
                else:
                    out = colour(kind, group, torch.tensor([m for _, _, m in members]))
                x.index_copy_(0, index, out.contiguous())
        x = x.mul_(255).round_().to(torch.uint8)
        for clip, row in enumerate(rows):  # erasing as apply_clip_augment does it (Kornia's draws its own box)
            erased, top, left, eh, ew, seed = row[4 * num_ops:]
            if erased:
                generator = torch.Generator().manual_seed(seed)
                x[clip, :, :, top:top + eh, left:left + ew] = torch.randint(0, 256, (c, 1, eh, ew),
                                                                            generator=generator, dtype=torch.uint8)
        return x

    return apply


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--num-ops", type=int, default=4)
    parser.add_argument("--magnitude", type=float, default=7.0)
    parser.add_argument("--magnitude-std", type=float, default=0.5)
    parser.add_argument("--erase", type=float, default=0.25)
    parser.add_argument("--batches", type=int, default=4, help="parameter draws timed per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size, generator = args.size, np.random.default_rng(0)
    clips = torch.from_numpy(generator.integers(0, 256, (args.clips, 3, args.frames, size, size), dtype=np.uint8))
    batches = [torch.stack([A.draw_clip_augment(generator, args.num_ops, args.magnitude, args.magnitude_std,
                                                args.erase, size, size) for _ in range(args.clips)])
               for _ in range(args.batches)]
    applied = sum(int(p[:, 0:4 * args.num_ops:4].sum()) for p in batches)
    print(f"{args.batches} batches of {args.clips} clips 3x{args.frames}x{size}x{size} uint8, rand-m"
          f"{args.magnitude:g}-n{args.num_ops}-mstd{args.magnitude_std:g}, erasing {args.erase:g}: "
          f"{applied / len(batches) / args.clips:.2f} ops applied per clip")
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} rounds")
    paths: dict[str, Apply] = {"torchvision per clip (before)": reference_apply_clip_augment,
                               "vmb batched (apply_clip_augment)": A.apply_clip_augment}
    kornia = kornia_apply()
    if kornia is not None:
        import kornia as kornia_module
        paths[f"kornia {kornia_module.__version__} batched"] = kornia
    times: dict[str, list[float]] = {label: [] for label in paths}
    expected = reference_apply_clip_augment(clips, batches[0])
    differing = {}
    for label, apply in paths.items():  # also the warm-up
        diff = (apply(clips, batches[0]).int() - expected.int()).abs()
        differing[label] = (100.0 * (diff > 0).float().mean().item(), int(diff.max()))
    for _ in range(args.rounds):
        for label, apply in paths.items():
            start = time.perf_counter()
            for params in batches:
                apply(clips, params)
            times[label].append((time.perf_counter() - start) / len(batches))
    base = statistics.median(times["torchvision per clip (before)"])
    print(f"{'path':36s} {'ms/batch':>9s} {'ms/clip':>8s} {'vs before':>9s} {'values != before':>16s} {'max diff':>8s}")
    for label, samples in times.items():
        median = statistics.median(samples)
        share, worst = differing[label]
        print(f"{label:36s} {1000 * median:9.1f} {1000 * median / args.clips:8.2f} {median / base:8.2f}x "
              f"{share:15.3f}% {worst:8d}")
    if kornia is None:
        print("kornia: skipped (not installed; pip install kornia to time it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
