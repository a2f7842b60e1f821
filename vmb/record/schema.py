"""What a run writes, named once: the files of a run folder, VMB's own run-log keys and their rule, and result.json
as a typed `Result`.

The trainer writes with these names (vmb.engine.train), the scorer reads with them (vmb.scoring.validate checks a
result.json against `RESULT_FIELDS`, derived from `Result`). mlperf-logging's own keys are in
`mlperf_logging.mllog.constants`; the compliance rules (vmb/scoring/rules/<version>/compliance.yaml) name VMB's keys too,
and a test checks they name only `VMB_KEYS`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mlperf_logging.mllog import constants as C

# The files of a run folder (OUTPUT_DIR), written by rank 0.
RUN_LOG = "run_log.txt"  # the MLLOG run log: the one source of truth (vmb.record.runlog)
RESULT = "result.json"  # `Result`, written when the run stops
CONFIG = "config.yaml"  # the resolved config
SYSTEM = "system.json"  # vmb.record.system.describe_system and the code's provenance
RUN_FILES = (RUN_LOG, RESULT, CONFIG, SYSTEM)  # what a finished run folder holds, and a submission packages
CHECKPOINT_FILE = "checkpoint.pyth"  # the last checkpoint, for resume (vmb.engine.checkpoint)
TENSORBOARD_DIR = "tensorboard"

# VMB's own run-log keys.
RESUME = "vmb_resume"  # the run was restarted from the checkpoint of epoch `value`; the clock kept running
CHECKPOINT = "vmb_checkpoint"  # a checkpoint of epoch `value` was written (logged right after)
DECODE_FAILURES = "vmb_decode_failures"  # training videos replaced in an epoch (metadata epoch_num)
SOURCE_DIGEST = "vmb_source_digest"  # header: vmb.record.provenance's digest of all the code that ran
BENCHMARK_VERSION = "vmb_benchmark_version"  # header: BENCHMARK.VERSION, the version the run claims to run
BENCHMARK_DIGEST = "vmb_benchmark_digest"  # header: vmb.record.provenance's digest of the timed path that ran
CONFIG_DIGEST = "vmb_config_digest"  # header: vmb.config.config_digest of the resolved config
NUMERICS = "vmb_numerics"  # header: the precision as value, vmb.engine.numerics' policy as metadata
NUM_WORKERS = "vmb_num_workers"  # header: DATA_LOADER.NUM_WORKERS as resolved on the machine
VMB_KEYS = (RESUME, CHECKPOINT, DECODE_FAILURES, SOURCE_DIGEST, BENCHMARK_VERSION, BENCHMARK_DIGEST, CONFIG_DIGEST,
            NUMERICS, NUM_WORKERS)

# The interval of the timed run (mlperf-logging's keys), and run_stop's status, as result.json's "status".
RUN_START, RUN_STOP = C.RUN_START, C.RUN_STOP
SUCCESS, ABORTED = C.SUCCESS, C.ABORTED

# How result.json's checked fields are typed in JSON (vmb.scoring.validate turns each into a check).
NUMBER, INTEGER, STRING_OR_NULL, BOOL_OR_NULL = "number", "integer", "string or null", "true, false or null"


def _checked(kind: Any) -> Any:
    """A field the scorer requires, of JSON type `kind` (str, list, or one of the names above)."""
    return field(metadata={"json": kind})


@dataclass(frozen=True)
class Result:
    """result.json: a finished run, as rank 0 writes it from the run log (`finish` in vmb.engine.train). Fields
    made with `_checked` are required, with their JSON type, by the scorer; the others are reported."""

    benchmark: str = _checked(str)  # BENCHMARK.NAME
    arch: str
    status: str = _checked(str)  # SUCCESS or ABORTED
    time_to_target_s: float = _checked(NUMBER)  # run_stop - run_start
    run_start_ms: int = _checked(INTEGER)
    run_stop_ms: int = _checked(INTEGER)
    target_top1: float = _checked(NUMBER)  # percent
    best_top1: float = _checked(NUMBER)  # percent, of the evaluations that stand
    epochs: float = _checked(NUMBER)  # fractional epoch of the last evaluation
    evals: list = _checked(list)  # {"epoch", "top1", "elapsed_s"} of each evaluation that stands
    n_devices: int = _checked(INTEGER)  # processes (GPUs on CUDA)
    device_type: str = _checked(str)  # "cpu" or "cuda"
    global_batch_size: int = _checked(INTEGER)
    seed: int = _checked(INTEGER)
    train_clips_per_s: float | None  # None before the first logging window
    decode_failures: int
    num_workers: int
    decoding_backend: str
    data_wait_fraction: float | None  # share of the training loop spent waiting for data
    data_wait_fraction_per_epoch: list
    config_digest: str = _checked(str)
    fixed_config_digest: str = _checked(str)  # the config digest without resource keys
    dataset_fingerprint: str = _checked(str)
    division: str = _checked(str)  # "closed" or "open"
    energy_j: dict | None  # {"per_device", "total"} over the timed run (NVML), None where not measured
    energy_note: str | None  # why energy_j is None
    benchmark_version: str = _checked(str)  # BENCHMARK.VERSION
    vmb_version: str = _checked(str)  # provenance (vmb.record.provenance.code_provenance)
    benchmark_digest: str = _checked(str)
    source_digest: str = _checked(str)
    git_commit: str | None = _checked(STRING_OR_NULL)
    git_dirty: bool | None = _checked(BOOL_OR_NULL)

    def to_json(self) -> dict:
        return asdict(self)


RESULT_FIELDS = {f.name: f.metadata["json"] for f in fields(Result) if "json" in f.metadata}
# In result.json and system.json: vmb.record.provenance.code_provenance()'s keys.
PROVENANCE_FIELDS = ("vmb_version", "benchmark_digest", "source_digest", "git_commit", "git_dirty")


def effective_evals(events: list) -> list:
    """The eval_accuracy events (vmb.record.runlog.LogEvent) that stand, in order. A `vmb_resume` from the
    checkpoint of epoch k supersedes every evaluation logged before it at an epoch above k: the resumed run repeats
    that training, and its own evaluations replace them (the compliance rules apply the same rule)."""
    kept: list = []
    for event in events:
        if event.key == C.EVAL_ACCURACY:
            kept.append(event)
        elif event.key == RESUME and type(event.value) in (int, float):
            kept = [e for e in kept if not _epoch_above(e, event.value)]
    return kept


def _epoch_above(event, epoch: float) -> bool:
    value = event.metadata.get("epoch_num")
    return type(value) not in (int, float) or value > epoch
