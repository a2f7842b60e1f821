"""Multi-view testing of a checkpoint (PySlowFast-style): `python tools/test_net.py --cfg CONFIG --checkpoint
FILE --views 10x3 --precision fp32,bf16 [KEY VALUE ...]`.

Each val video is seen as TEST.NUM_ENSEMBLE_VIEWS evenly spaced clips x TEST.NUM_SPATIAL_CROPS crops
(vmb.data.kinetics.KineticsDataset `views`); its views' softmax scores are averaged, and top-1 / top-5 are
counted exactly across processes as validation is (disjoint unpadded shards, counts summed). 1x1 is the
training run's validation view, so its top-1 is the run's evaluation of the same weights.
"""
from __future__ import annotations

import json
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import DataLoader

from vmb.data.kinetics import KineticsDataset
from vmb.data.loader import ShardSampler, build_loader, clip_spec_from_cfg, num_workers_here
from vmb.data.transforms import normalize
from vmb.backends import BACKENDS
from vmb.data.video import check_decoding_device
from vmb.engine import distributed
from vmb.engine.checkpoint import load_weights
from vmb.engine.precision import autocast, memory_format, unsupported
from vmb.errors import VMBError



def view_scores(logits: torch.Tensor) -> torch.Tensor:
    """(N, V, K) logits of N videos' V views -> (N, K) softmax scores averaged over each video's views."""
    return logits.float().softmax(dim=-1).mean(dim=1)


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> torch.Tensor:
    """(len(ks),) int64: how many of the N videos have their label among their top-k (N, K) `scores`, for
    each k; a k above the K classes counts as K."""
    num_classes = scores.shape[1]
    ranked = scores.topk(min(max(ks), num_classes), dim=1).indices  # (N, min(max k, K))
    hits = ranked == labels[:, None]
    return torch.stack([hits[:, :min(k, num_classes)].any(dim=1).sum() for k in ks])


def build_test_loader(cfg, rank: int, world_size: int, device: torch.device, workers: int) -> DataLoader:
    """This process's disjoint, unpadded shard of the val split as multi-view samples: batches of
    (views uint8 (N, V, C, T, H, W), labels (N,), ...). TEST.BATCH_SIZE counts views (as in PySlowFast),
    so a batch holds TEST.BATCH_SIZE / (processes * V) videos, at least one. An on-device decoding backend
    decodes in this process (`workers` is 0 for it), its views already on `device`."""
    views = (cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS)
    on_device = BACKENDS[cfg.DATA.DECODING_BACKEND].on_device
    dataset = KineticsDataset(cfg.DATA.PATH_TO_DATA_DIR, "val", cfg.MODEL.NUM_CLASSES, clip_spec_from_cfg(cfg),
                              train=False, path_prefix=cfg.DATA.PATH_PREFIX, views=views,
                              device=device if on_device else torch.device("cpu"))
    videos = max(1, -(-cfg.TEST.BATCH_SIZE // world_size) // (views[0] * views[1]))
    return build_loader(dataset, ShardSampler(len(dataset), rank, world_size), videos, workers,
                        pin_memory=device.type == "cuda" and not on_device and cfg.DATA_LOADER.PIN_MEMORY,
                        prefetch_factor=cfg.DATA_LOADER.PREFETCH_FACTOR, drop_last=False)


def evaluate_views(model: torch.nn.Module, loader: DataLoader, device: torch.device, mean: Sequence[float],
                   std: Sequence[float], autocasts: Sequence[AbstractContextManager]) -> tuple[torch.Tensor, list]:
    """Every batch through the model once per autocast context.

    Returns:
        (len(autocasts), 3) int64 (correct top-1, correct top-5, videos), summed over all processes, and
        this process's seconds in the model per context (forward, softmax and counting).

    Raises:
        VMBError: the processes together counted another number of videos than the split has.
    """
    model.eval()
    counts = torch.zeros(len(autocasts), 3, dtype=torch.long, device=device)
    seconds = [0.0] * len(autocasts)
    with torch.inference_mode():
        for views, labels, *_ in loader:
            num_videos, num_views = views.shape[:2]
            clips = normalize(views.to(device, non_blocking=True).flatten(0, 1), mean, std,
                              memory_format(device))  # (N * V, C, T, H, W)
            labels = labels.to(device, non_blocking=True)
            for i, autocast in enumerate(autocasts):
                start = time.perf_counter()
                with autocast:
                    logits = model(clips)
                counts[i, :2] += topk_correct(view_scores(logits.view(num_videos, num_views, -1)), labels)
                counts[i, 2] += num_videos
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                seconds[i] += time.perf_counter() - start
    counts = distributed.all_reduce_sum(counts)
    if counts[0, 2] != len(loader.dataset):
        raise VMBError(f"testing counted {int(counts[0, 2])} videos but the val split has {len(loader.dataset)}")
    return counts.cpu(), seconds


def precision_contexts(names: Sequence[str], device: torch.device) -> tuple[dict, list[str]]:
    """({name: autocast context} for the precisions that run on `device`, one-line notes for the others)."""
    contexts, notes = {}, []
    for name in names:
        why = unsupported(name, device)
        if why is None:
            contexts[name] = autocast(name, device)
        else:
            notes.append(f"{name} skipped: {why}")
    return contexts, notes


def format_table(report: dict) -> str:
    """The terminal table of `report` (as `main` writes it with --json): one row per precision."""
    lines = [f"checkpoint {report['checkpoint']} (epoch {report['epoch']}), {report['config']}, "
             f"MODEL.ARCH {report['arch']}",
             f"val: {report['videos']} videos x {report['views']} views ({report['clips']} clips x "
             f"{report['crops']} crops), {report['processes']} process(es) on {report['device']}, "
             f"{report['wall_s']:.1f} s in all (seconds below: rank 0's time in the model)",
             f"{'precision':<10}{'top-1 %':>9}{'top-5 %':>9}{'videos':>8}{'views':>7}{'seconds':>9}"]
    for row in report["results"]:
        lines.append(f"{row['precision']:<10}{row['top1']:>9.2f}{row['top5']:>9.2f}{row['videos']:>8}"
                     f"{report['views']:>7}{row['seconds']:>9.2f}")
    lines += [f"note: {note}" for note in report["notes"]]
    return "\n".join(lines)


def test_checkpoint(cfg, cfg_file: str, checkpoint: Path, precisions: list[str], json_path: Path | None) -> None:
    """Test `checkpoint` in this process (one of possibly several); rank 0 prints and writes the report."""
    from vmb.engine.numerics import set_numerics
    from vmb.models.build import build_model

    workers = num_workers_here(cfg.DATA_LOADER.NUM_WORKERS, cfg.DATA.DECODING_BACKEND)
    ctx = distributed.setup(cfg.NUM_GPUS, workers)
    try:
        check_decoding_device(cfg.DATA.DECODING_BACKEND, ctx.device)
        numerics = set_numerics(ctx.device)
        contexts, notes = precision_contexts(precisions, ctx.device)
        if not contexts:
            raise VMBError(f"--precision {','.join(precisions)}: none runs on the {ctx.device.type}; add fp32")
        model = build_model(cfg)
        state = load_weights(model, checkpoint, cfg.MODEL.ARCH, cfg_file)
        model.to(ctx.device, memory_format=memory_format(ctx.device))
        loader = build_test_loader(cfg, ctx.rank, ctx.world_size, ctx.device, workers)
        start = time.perf_counter()
        counts, seconds = evaluate_views(model, loader, ctx.device, cfg.DATA.MEAN, cfg.DATA.STD,
                                         list(contexts.values()))
        wall = time.perf_counter() - start
    finally:
        distributed.teardown()
    if not ctx.is_main:
        return
    clips, crops = cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS
    report = {
        "checkpoint": str(checkpoint), "epoch": state.get("epoch"), "config": cfg_file, "arch": cfg.MODEL.ARCH,
        "videos": int(counts[0, 2]), "clips": clips, "crops": crops, "views": clips * crops,
        "processes": ctx.world_size, "device": ctx.device.type, "numerics": numerics, "wall_s": wall,
        "results": [{"precision": name, "top1": 100.0 * int(c1) / int(n), "top5": 100.0 * int(c5) / int(n),
                     "correct_top1": int(c1), "correct_top5": int(c5), "videos": int(n), "seconds": s}
                    for name, (c1, c5, n), s in zip(contexts, counts.tolist(), seconds)],
        "notes": notes,
    }
    print(format_table(report))
    if json_path:
        json_path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"results written to {json_path}", file=sys.stderr)
