"""What the check runs: the benchmark models and their configs, the tools' settings, the cell groups (in report
order), and the work of each cell sized to the budget and the machine (`make_plan`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vmb.speed.system_check.process import REPO_ROOT

if TYPE_CHECKING:
    from fvcore.common.config import CfgNode

# Data sizing: share of the budget for generating the synthetic set, and what a frame costs (render + all-intra
# x264 at 456x256: 5.5 ms of one Xeon core measured, rounded up).
DATA_SHARE = 0.2
FRAME_CORE_S = 0.006
MAX_TRAIN_PER_CLASS = 48  # twice the kinetics profile's: fewer epoch boundaries in a dry run
MIN_CLIP_S = 0.5


@dataclass(frozen=True)
class Model:
    """A benchmark model: its zoo name, label, dry-run config and canonical config (relative to the repository)."""

    name: str
    label: str
    dryrun: str
    canonical: str


MODELS = (Model("x3d_m", "X3D-M", "configs/dryrun/X3D_M.yaml", "configs/X3D_M.yaml"),
          Model("mvit_b_16x4", "MViT-B 16x4", "configs/dryrun/MVIT_B_16x4.yaml", "configs/MVIT_B_16x4.yaml"))
LABELS = {m.name: m.label for m in MODELS}
CPU_DRYRUN_CONFIG = "configs/smoke/X3D.yaml"
BACKENDS = ("pyav", "torchcodec_cuda", "dali")
TRAIN_PRECISIONS = ("fp32", "bf16")
INFER_PRECISIONS = "fp32,bf16,fp16"
INFER_BATCHES = "1,8"
NCCL_SIZES_MIB = "64,256"

# Groups, in report order.
G_ENV, G_DATA, G_TESTS, G_DRY, G_TRAIN, G_INFER, G_MULTI = (
    "Environment", "Synthetic data and CPU", "CUDA tests", "Dry runs (decoding video files)",
    "Training (synthetic input)", "Inference", "Several GPUs")
GROUPS = (G_ENV, G_DATA, G_TESTS, G_DRY, G_TRAIN, G_INFER, G_MULTI)


@dataclass(frozen=True)
class Plan:
    """The work of each cell. Data: `train_per_class` training and 1 validation video per class of `clip_seconds`
    (`span_seconds` is the longest training clip span of the models: a shorter clip repeats its last frame for the
    instants past its end, so the per-core figure on it comes out optimistic). bench_train runs `*_iters`
    iterations of which the first `*_warmup` are not timed: `dry_` on real data, `train_` on synthetic input;
    bench_infer times each of its cells for `infer_seconds` after `infer_warmup` iterations."""

    train_per_class: int
    clip_seconds: float
    span_seconds: float
    data_workers: int
    per_core_s: float  # CPU seconds per model in the per-core cell
    dry_warmup: int
    dry_iters: int
    train_warmup: int
    train_iters: int
    infer_warmup: int
    infer_seconds: float


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def model_config(model: Model, which: str = "canonical") -> CfgNode:
    """The model's canonical or dry-run config (`which`: "canonical" or "dryrun")."""
    from vmb.config import load_config

    return load_config(REPO_ROOT / getattr(model, which))


def per_gpu_batch(model: Model) -> int:
    """The canonical config's TRAIN.BATCH_SIZE over its NUM_GPUS: one GPU's share of the global batch."""
    from vmb.data.loader import per_process_batch

    cfg = model_config(model)
    return per_process_batch(cfg.TRAIN.BATCH_SIZE, max(1, cfg.NUM_GPUS), "TRAIN.BATCH_SIZE")


def config_precision(model: Model) -> str:
    """The precision the canonical config trains in on CUDA (bench_train's default there)."""
    cfg = model_config(model)
    return {"float16": "fp16", "bfloat16": "bf16"}[cfg.TRAIN.AMP_DTYPE] if cfg.TRAIN.MIXED_PRECISION else "fp32"


def make_plan(budget_s: float, cores: int, cuda_devices: int) -> Plan:
    """Size the cells' work to the budget. The synthetic set gets DATA_SHARE of the budget on `cores` cores at
    FRAME_CORE_S per frame: clips as long as the models' longest span (whole seconds) where that fits, else shorter
    (at least MIN_CLIP_S); with CUDA at least enough training videos for the largest global batch of the dry-run
    configs (bench_train's sampler needs one), up to MAX_TRAIN_PER_CLASS; without CUDA one per class (the CPU cells
    need no more)."""
    from vmb.data.sampling import clip_duration
    from vmb.data.prepare.synthetic import PROFILES
    from vmb.data.prepare.synthetic_render import CLASS_NAMES

    configs = [model_config(m, "dryrun") for m in MODELS]
    span = max(clip_duration(c.DATA.NUM_FRAMES, c.DATA.SAMPLING_RATE, c.DATA.TARGET_FPS) for c in configs)
    fps, classes = PROFILES["kinetics"].fps, len(CLASS_NAMES)
    frames = DATA_SHARE * budget_s * cores / FRAME_CORE_S
    full_s = float(math.ceil(span))
    fitting = int(frames // (classes * full_s * fps)) - 1  # training videos per class at full length (val: 1)
    if cuda_devices:
        least = math.ceil(max(c.TRAIN.BATCH_SIZE for c in configs) / classes)
        train_per_class = int(_clamp(fitting, least, MAX_TRAIN_PER_CLASS))
    else:
        train_per_class = 1
    seconds = full_s
    if fitting < train_per_class:
        seconds = _clamp(math.floor(frames / (classes * (train_per_class + 1) * fps) * 10) / 10, MIN_CLIP_S, full_s)
    dry_warmup, train_warmup = int(_clamp(round(budget_s / 96), 2, 5)), int(_clamp(round(budget_s / 48), 2, 10))
    return Plan(train_per_class=train_per_class, clip_seconds=seconds, span_seconds=round(span, 3),
                data_workers=max(1, cores), per_core_s=_clamp(budget_s / 60, 1.0, 5.0), dry_warmup=dry_warmup,
                dry_iters=dry_warmup + int(_clamp(round(budget_s / 24), 5, 50)), train_warmup=train_warmup,
                train_iters=train_warmup + int(_clamp(round(budget_s / 12), 5, 100)), infer_warmup=5,
                infer_seconds=_clamp(budget_s / 240, 0.5, 3.0))
