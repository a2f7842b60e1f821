"""Multi-view testing of a checkpoint (PySlowFast-style): `python tools/test_net.py --cfg CONFIG --checkpoint
FILE --views 10x3 --runtime torch,onnxruntime --precision fp32,int8 [KEY VALUE ...]`.

Each val video is seen as TEST.NUM_ENSEMBLE_VIEWS evenly spaced clips x TEST.NUM_SPATIAL_CROPS crops
(vmb.data.kinetics.KineticsDataset `views`); its views' softmax scores are averaged, and top-1 / top-5 are
counted exactly across processes as validation is (disjoint unpadded shards, counts summed). 1x1 is the
training run's validation view, so its top-1 is the run's evaluation of the same weights.

Cells: every (runtime, precision) cell sees the same decoded batches (each batch decoded once, then run through
every cell), and the report puts them side by side as MagicMind's deployment tables do (model, batch, input
shape, runtime, precision, top-1, top-5) with the change against eager fp32. The engine's own cells are eager
PyTorch at each precision (`EagerCells`); other runtimes (torch.compile, ONNX Runtime, TensorRT, int8) come from
a `CellFactory` the command passes in (vmb.speed.runtimes.DeployCells: the engine never imports vmb.speed).
"""
from __future__ import annotations

import functools
import json
import sys
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

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

Forward = Callable[[torch.Tensor], torch.Tensor]  # normalised clips (N, C, T, H, W) on the device -> logits (N, K)
BASELINE = ("torch", "fp32")  # the cell the others are compared with: eager PyTorch, fp32


class CellFactory(Protocol):
    """Makes the (runtime, precision) cells' forward functions of a loaded model in a testing process."""

    info: dict  # what the report records about the cells (JSON "deployment")

    def __call__(self, model: torch.nn.Module, cells: list[tuple[str, str]],
                 device: torch.device) -> tuple[list[tuple[str, str, Forward]], list[str]]:
        """(the cells that run, as (runtime, precision, forward), one-line notes on the others)."""


def model_name(cfg, cfg_file: str) -> str:
    """A config's model as the reports name it: BENCHMARK.NAME, else the config file's stem."""
    return cfg.BENCHMARK.NAME or Path(cfg_file).stem


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


def videos_per_batch(cfg, world_size: int) -> int:
    """Videos in one process's test batch: TEST.BATCH_SIZE counts views (as in PySlowFast), so a batch holds
    TEST.BATCH_SIZE / (processes * V) videos, at least one."""
    views = cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS
    return max(1, -(-cfg.TEST.BATCH_SIZE // world_size) // views)


def build_test_loader(cfg, rank: int, world_size: int, device: torch.device, workers: int) -> DataLoader:
    """This process's disjoint, unpadded shard of the val split as multi-view samples: batches of
    (views uint8 (N, V, C, T, H, W), labels (N,), ...), `videos_per_batch` videos each. An on-device decoding
    backend decodes in this process (`workers` is 0 for it), its views already on `device`."""
    views = (cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS)
    on_device = BACKENDS[cfg.DATA.DECODING_BACKEND].on_device
    dataset = KineticsDataset(cfg.DATA.PATH_TO_DATA_DIR, "val", cfg.MODEL.NUM_CLASSES, clip_spec_from_cfg(cfg),
                              train=False, path_prefix=cfg.DATA.PATH_PREFIX, views=views,
                              device=device if on_device else torch.device("cpu"))
    return build_loader(dataset, ShardSampler(len(dataset), rank, world_size), videos_per_batch(cfg, world_size),
                        workers, pin_memory=device.type == "cuda" and not on_device and cfg.DATA_LOADER.PIN_MEMORY,
                        prefetch_factor=cfg.DATA_LOADER.PREFETCH_FACTOR, drop_last=False)


def evaluate_views(model: torch.nn.Module, loader: DataLoader, device: torch.device, mean: Sequence[float],
                   std: Sequence[float], forwards: Sequence[Forward]) -> tuple[torch.Tensor, list]:
    """Every batch, decoded once, through each of `forwards` (the cells' runners of `model`).

    Returns:
        (len(forwards), 3) int64 (correct top-1, correct top-5, videos), summed over all processes, and
        this process's seconds in each forward (with softmax and counting).

    Raises:
        VMBError: the processes together counted another number of videos than the split has.
    """
    model.eval()
    counts = torch.zeros(len(forwards), 3, dtype=torch.long, device=device)
    seconds = [0.0] * len(forwards)
    with torch.inference_mode():
        for views, labels, *_ in loader:
            num_videos, num_views = views.shape[:2]
            clips = normalize(views.to(device, non_blocking=True).flatten(0, 1), mean, std,
                              memory_format(device))  # (N * V, C, T, H, W)
            labels = labels.to(device, non_blocking=True)
            for i, forward in enumerate(forwards):
                start = time.perf_counter()
                logits = forward(clips).to(device)
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


@dataclass(frozen=True)
class EagerCells:
    """The engine's own cells: eager PyTorch (runtime "torch") at each precision the device runs natively
    (`precision_contexts`); notes name the others."""

    info: dict = field(default_factory=dict)  # nothing beyond the model to report

    def __call__(self, model: torch.nn.Module, cells: list[tuple[str, str]],
                 device: torch.device) -> tuple[list[tuple[str, str, Forward]], list[str]]:
        contexts, notes = precision_contexts([precision for _, precision in cells], device)
        return [("torch", name, functools.partial(_under, model, context)) for name, context in contexts.items()], notes


def _under(model: torch.nn.Module, context: AbstractContextManager, clips: torch.Tensor) -> torch.Tensor:
    with context:
        return model(clips)


def _change(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def format_table(report: dict) -> str:
    """The terminal table of `report` (as `test_checkpoint` writes it with --json): one row per (runtime,
    precision) cell, MagicMind's columns and the change in points against eager fp32."""
    lines = [f"checkpoint {report['checkpoint']} (epoch {report['epoch']}), {report['config']}, "
             f"MODEL.ARCH {report['arch']}",
             f"val: {report['videos']} videos x {report['views']} views ({report['clips']} clips x "
             f"{report['crops']} crops), {report['processes']} process(es) on {report['device']}, "
             f"{report['wall_s']:.1f} s in all (seconds below: rank 0's time in the model; chg: points against "
             "eager fp32)",
             f"{'model':<14}{'batch':>6}  {'input':<14}{'runtime':<13}{'precision':<10}{'top-1 %':>9}{'top-5 %':>9}"
             f"{'chg top-1':>11}{'chg top-5':>11}{'videos':>8}{'seconds':>9}"]
    for row in report["results"]:
        lines.append(f"{report['model']:<14}{report['batch']:>6}  {report['input']:<14}{row['runtime']:<13}"
                     f"{row['precision']:<10}{row['top1']:>9.2f}{row['top5']:>9.2f}{_change(row['top1_change']):>11}"
                     f"{_change(row['top5_change']):>11}{row['videos']:>8}{row['seconds']:>9.2f}")
    lines += [f"note: {note}" for note in report["notes"]]
    return "\n".join(lines)


def _results(cells: list[tuple[str, str]], counts: torch.Tensor, seconds: list[float]) -> list[dict]:
    """The report's rows: counts, percentages and, where the eager fp32 cell ran, the change against it."""
    rows = [{"runtime": runtime, "precision": precision, "top1": 100.0 * int(c1) / int(n),
             "top5": 100.0 * int(c5) / int(n), "correct_top1": int(c1), "correct_top5": int(c5), "videos": int(n),
             "seconds": s} for (runtime, precision), (c1, c5, n), s in zip(cells, counts.tolist(), seconds)]
    base = next((row for row in rows if (row["runtime"], row["precision"]) == BASELINE), None)
    for row in rows:
        for key in ("top1", "top5"):
            row[f"{key}_change"] = None if base is None else row[key] - base[key]
    return rows


def test_checkpoint(cfg, cfg_file: str, checkpoint: Path, cells: list[tuple[str, str]], json_path: Path | None,
                    factory: CellFactory) -> None:
    """Test `checkpoint` in this process (one of possibly several) in each (runtime, precision) cell that
    `factory` can run (`EagerCells` for eager PyTorch); rank 0 prints and writes the report."""
    from vmb.engine.numerics import set_numerics
    from vmb.models.build import build_model

    workers = num_workers_here(cfg.DATA_LOADER.NUM_WORKERS, cfg.DATA.DECODING_BACKEND)
    ctx = distributed.setup(cfg.NUM_GPUS, workers)
    try:
        check_decoding_device(cfg.DATA.DECODING_BACKEND, ctx.device)
        numerics = set_numerics(ctx.device)
        model = build_model(cfg)
        state = load_weights(model, checkpoint, cfg.MODEL.ARCH, cfg_file)
        model.to(ctx.device, memory_format=memory_format(ctx.device)).eval()
        ready, notes = factory(model, cells, ctx.device)
        if not ready:
            raise VMBError(f"none of the cells {', '.join(' '.join(cell) for cell in cells)} runs on the "
                           f"{ctx.device.type}: {notes[0]}")
        loader = build_test_loader(cfg, ctx.rank, ctx.world_size, ctx.device, workers)
        start = time.perf_counter()
        counts, seconds = evaluate_views(model, loader, ctx.device, cfg.DATA.MEAN, cfg.DATA.STD,
                                         [forward for _, _, forward in ready])
        wall = time.perf_counter() - start
    finally:
        distributed.teardown()
    if not ctx.is_main:
        return
    clips, crops = cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS
    crop = cfg.DATA.TEST_CROP_SIZE
    report = {
        "checkpoint": str(checkpoint), "epoch": state.get("epoch"), "config": cfg_file, "arch": cfg.MODEL.ARCH,
        "model": model_name(cfg, cfg_file), "batch": videos_per_batch(cfg, ctx.world_size) * clips * crops,
        "input": f"3x{cfg.DATA.NUM_FRAMES}x{crop}x{crop}",
        "videos": int(counts[0, 2]), "clips": clips, "crops": crops, "views": clips * crops,
        "processes": ctx.world_size, "device": ctx.device.type, "numerics": numerics, "wall_s": wall,
        "results": _results([(runtime, precision) for runtime, precision, _ in ready], counts, seconds),
        "notes": notes, "deployment": factory.info,
    }
    print(format_table(report))
    if json_path:
        json_path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"results written to {json_path}", file=sys.stderr)
