"""The benchmark's rules in one declarative place: which benchmarks exist, their canonical configs and
targets, which config keys a submitter may change (resources only), the divisions, and which
hyperparameters every run logs."""
from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import Any

from fvcore.common.config import CfgNode


def _config_dir() -> Path:
    """The canonical configs: installed inside the package (vmb/configs, setup.py) or, in a checkout or an
    editable install, the repository's configs/ folder."""
    package = Path(__file__).resolve().parent
    installed = package / "configs"
    return installed if installed.is_dir() else package.parent / "configs"


CONFIG_DIR = _config_dir()


@dataclass(frozen=True)
class Benchmark:
    """One time-to-target benchmark."""

    name: str
    model_class: str  # "cnn" or "transformer": the two halves of a suite's score
    suite: str
    config: Path  # canonical config; its BENCHMARK.TARGET_TOP1 is the target


BENCHMARKS = {
    b.name: b
    for b in (
        Benchmark("x3d_m", "cnn", "kinetics20", CONFIG_DIR / "X3D_M.yaml"),
        Benchmark("mvit_b_16x4", "transformer", "kinetics20", CONFIG_DIR / "MVIT_B_16x4.yaml"),
        Benchmark("smoke_x3d", "cnn", "smoke", CONFIG_DIR / "smoke" / "X3D.yaml"),
        Benchmark("smoke_mvit", "transformer", "smoke", CONFIG_DIR / "smoke" / "MVIT.yaml"),
    )
}

# Keys a submitter may change: where things run and are written, how data is fed, how often state is
# saved or logged, the seed (it must differ between runs), numerics (mixed precision, as MLPerf's
# closed division allows) and the division the run is submitted in. Everything else is fixed by the
# canonical config (in the closed division; the open division reports the differences).
RESOURCE_KEYS = frozenset({
    "NUM_GPUS",
    "BENCHMARK.DIVISION",
    "RNG_SEED",
    "OUTPUT_DIR",
    "LOG_PERIOD",
    "DATA.PATH_TO_DATA_DIR",
    "DATA.PATH_PREFIX",
    "DATA.DECODING_BACKEND",
    "DATA_LOADER.NUM_WORKERS",
    "DATA_LOADER.PIN_MEMORY",
    "DATA_LOADER.PREFETCH_FACTOR",
    "TRAIN.CHECKPOINT_PERIOD",
    "TRAIN.AUTO_RESUME",
    "TRAIN.MIXED_PRECISION",
    "TRAIN.AMP_DTYPE",
    "TEST.BATCH_SIZE",
    "TEST.CACHE_CLIPS",
    "TEST.NUM_ENSEMBLE_VIEWS",  # tools/test_net.py only: the timed run's validation is always 1x1
    "TEST.NUM_SPATIAL_CROPS",
    "TENSORBOARD.ENABLE",
})


# MLPerf's divisions: in "closed" only RESOURCE_KEYS may differ from the canonical config and the code must be
# the reference's; "open" allows any change and reports it (BENCHMARK.DIVISION).
CLOSED, OPEN = "closed", "open"
DIVISIONS = (CLOSED, OPEN)

# Run-log key -> the config key whose value it logs. Every run logs each key exactly once in its header,
# and the scorer checks the value against the run's config.yaml.
LOGGED_HYPERPARAMETERS = {
    "seed": "RNG_SEED",
    "global_batch_size": "TRAIN.BATCH_SIZE",
    "opt_name": "SOLVER.OPTIMIZING_METHOD",
    "opt_base_learning_rate": "SOLVER.BASE_LR",
    "opt_weight_decay": "SOLVER.WEIGHT_DECAY",
    "opt_momentum": "SOLVER.MOMENTUM",
    "opt_learning_rate_warmup_epochs": "SOLVER.WARMUP_EPOCHS",
    "opt_lr_warmup_start_lr": "SOLVER.WARMUP_START_LR",
    "opt_lr_schedule": "SOLVER.LR_POLICY",
    "opt_end_learning_rate": "SOLVER.COSINE_END_LR",
    "opt_max_epoch": "SOLVER.MAX_EPOCH",
    "opt_gradient_clip_norm": "SOLVER.CLIP_GRAD_L2NORM",
    "target_top1": "BENCHMARK.TARGET_TOP1",
    "submission_division": "BENCHMARK.DIVISION",
}


def logged_hyperparameters(cfg: CfgNode) -> dict[str, Any]:
    """{run-log key: value} of LOGGED_HYPERPARAMETERS for the config `cfg`, in the table's order."""
    return {key: reduce(getattr, config_key.split("."), cfg) for key, config_key in LOGGED_HYPERPARAMETERS.items()}


def expected_seeds(num_runs: int) -> list[int]:
    """The RNG_SEEDs that `num_runs` runs of one benchmark must use: 0, 1, ..., num_runs - 1, each once.

    Seeds are not free: a submitter who could pick them could run many and submit the luckiest. Failed runs
    count as runs (they hold their seed too)."""
    return list(range(num_runs))

