"""Defaults for the run: resources, training loop, evaluation, logging and the benchmark target.

Every key has a comment (what it holds, its unit, its allowed values): vmb/config/doc.py reads them into
docs/CONFIG.md, and tests/config/test_config_doc.py fails on a key without one.
"""
from fvcore.common.config import CfgNode

# TRAIN.AMP_DTYPE's allowed values -> the precision name every tool uses (vmb.engine.precision.PRECISIONS).
AMP_DTYPES = {"float16": "fp16", "bfloat16": "bf16"}


def add_run_defaults(cfg: CfgNode) -> None:
    # GPUs the run trains on, over all its machines, one process each; 0 trains on the CPU. Without a launcher,
    # run_net/test_net start NUM_GPUS processes here; under a launcher (torchrun, srun), its world size must equal
    # it (on the CPU the launcher's count is used). The rule: vmb/engine/distributed.py.
    cfg.NUM_GPUS = 1
    # Seed of the model's initialisation, the per-epoch torch seed, the training clips' sampling and augmentation,
    # and MixUp's draws (an integer). A scored set of N runs must use seeds 0 to N-1.
    cfg.RNG_SEED = 0
    # Folder the run writes (rank 0 only): result.json, run_log.txt, config.yaml, system.json, the checkpoint,
    # tensorboard/. A folder holding a finished run is refused.
    cfg.OUTPUT_DIR = "runs/default"
    cfg.LOG_PERIOD = 10  # iterations between loss/lr readings (a host sync) for the log and TensorBoard

    # The training loop: batch, evaluation and checkpoint periods, resume, mixed precision.
    cfg.TRAIN = CfgNode()
    cfg.TRAIN.BATCH_SIZE = 128  # clips per step, global: split evenly over all processes (must divide exactly)
    # Epochs between evaluations; fractions are allowed (0.25 = four evaluations per epoch).
    cfg.TRAIN.EVAL_PERIOD = 1.0
    cfg.TRAIN.CHECKPOINT_PERIOD = 1  # whole epochs between checkpoints (OUTPUT_DIR/checkpoint.pyth)
    # Resume an interrupted run found in OUTPUT_DIR from its checkpoint (its clock keeps running); False refuses
    # such a folder.
    cfg.TRAIN.AUTO_RESUME = True
    cfg.TRAIN.MIXED_PRECISION = False  # autocast (+ GradScaler for float16) on CUDA; ignored on the CPU
    # Autocast dtype when TRAIN.MIXED_PRECISION is on: "float16" or "bfloat16" (native bf16 GPUs only).
    cfg.TRAIN.AMP_DTYPE = "float16"

    # Validation during training (always one centre clip, centre crop per video) and tools/test_net.py.
    cfg.TEST = CfgNode()
    # Clips per validation batch, global (split over the processes, rounded up); in tools/test_net.py it counts
    # views, so a batch holds TEST.BATCH_SIZE / views videos.
    cfg.TEST.BATCH_SIZE = 64
    # Keep the decoded validation clips in memory after the first evaluation (same results, no re-decoding;
    # costs the val split's size in uint8 clips per run, e.g. ~16 MB for the smoke data).
    cfg.TEST.CACHE_CLIPS = False
    # Multi-view testing of a checkpoint (tools/test_net.py only; validation during training is always 1x1):
    # evenly spaced clips per video.
    cfg.TEST.NUM_ENSEMBLE_VIEWS = 1
    # tools/test_net.py only: spatial crops per clip, 1 (centre) or 3 (left/centre/right, as PySlowFast).
    cfg.TEST.NUM_SPATIAL_CROPS = 1

    # TensorBoard event files.
    cfg.TENSORBOARD = CfgNode()
    cfg.TENSORBOARD.ENABLE = True  # write loss, lr, clips/s and val top-1 to OUTPUT_DIR/tensorboard (rank 0)

    # What the run is timed against.
    cfg.BENCHMARK = CfgNode()
    cfg.BENCHMARK.NAME = ""  # a key of vmb.rules.BENCHMARKS, e.g. "x3d_m" (other names are never scored)
    # Validation top-1 (percent, 0-100) whose first evaluation at or above it stops the clock.
    cfg.BENCHMARK.TARGET_TOP1 = 0.0
    # MLPerf's division (vmb.rules.DIVISIONS): "closed" runs the canonical recipe and code; "open" may
    # change them, and the scorer reports every difference next to its score.
    cfg.BENCHMARK.DIVISION = "closed"
    # The benchmark version this code and its canonical configs implement: a closed-division run must have the
    # benchmark digest that version publishes (vmb/scoring/rules/<version>/release.yaml; docs/RELEASES.md).
    cfg.BENCHMARK.VERSION = "1.0"
