"""The benchmark's rules in one declarative place: which benchmarks exist, their canonical configs and
targets, and which config keys a submitter may change (resources only)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path



def _config_dir() -> Path:
    """The canonical configs: installed inside the package (vmb/configs, setup.py) or, in a checkout or an
    editable install, the repository's configs/ folder."""
    package = Path(__file__).resolve().parents[1]
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
# saved or logged, the seed (it must differ between runs), and numerics (mixed precision, as MLPerf's
# closed division allows). Everything else is fixed by the canonical config.
RESOURCE_KEYS = frozenset({
    "NUM_GPUS",
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
    "TENSORBOARD.ENABLE",
})


def expected_seeds(num_runs: int) -> list[int]:
    """The RNG_SEEDs that `num_runs` runs of one benchmark must use: 0, 1, ..., num_runs - 1, each once.

    Seeds are not free: a submitter who could pick them could run many and submit the luckiest. Failed runs
    count as runs (they hold their seed too)."""
    return list(range(num_runs))

