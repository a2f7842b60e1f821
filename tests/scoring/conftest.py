"""Run folders for the scorer's tests: two real tiny runs (trained once per session) and hand-made runs.

The tiny runs belong to two test-only benchmarks, tiny_cnn and tiny_transformer (suite "tiny"), whose
canonical configs are the tiny X3D of tests/conftest.py with a 40 % target; the `tiny_benchmarks` fixture
registers them in vmb.rules.BENCHMARKS for one test. Hand-made runs (`fake_run`) are written through
the real RunLog and header (vmb.record.header) with chosen times, seeds, outcomes, epochs and divisions, and
this code's provenance, for the arithmetic of several runs.
"""
from __future__ import annotations

import json
import pathlib
import shutil
import time

import pytest
from release_rules import write_test_rules

from vmb import rules
from vmb.record.header import log_header
from vmb.record.provenance import code_provenance
from vmb.record.runlog import RunLog
from vmb.record.system import describe_system
from vmb.config import config_digest, load_config
from vmb.engine import train
from vmb.scoring import release

TINY_SUITE = "tiny"
TINY_TARGET = 40.0
TINY_BENCHMARKS = {"tiny_cnn": "cnn", "tiny_transformer": "transformer"}
FAKE_FINGERPRINT = "sha256:" + "ab" * 32


@pytest.fixture(scope="session")
def tiny_canonical(tmp_path_factory, tiny_videos_dir, tiny_train_args, smoke_config) -> dict[str, pathlib.Path]:
    """name -> canonical config file of each tiny benchmark."""
    root = tmp_path_factory.mktemp("tiny_canonical")
    configs = {}
    for name in TINY_BENCHMARKS:
        cfg = load_config(smoke_config, tiny_train_args(tiny_videos_dir, root / "unused", "BENCHMARK.NAME", name,
                                                        "BENCHMARK.TARGET_TOP1", TINY_TARGET, "SOLVER.MAX_EPOCH", 10))
        configs[name] = root / f"{name}.yaml"
        configs[name].write_text(cfg.dump())
    return configs


def publish_test_release(monkeypatch, tmp_path: pathlib.Path, benchmarks: dict[str, pathlib.Path],
                         version: str | None = None, benchmark_digest: str | None = None,
                         p_value: float | None = None) -> pathlib.Path:
    """For one test, the scorer reads a copy of its rules (release_rules.write_test_rules) in which `version`
    publishes `benchmarks` too; returns the copy's folder."""
    rules_dir = write_test_rules(tmp_path / f"release_rules_{version}", benchmarks, version, benchmark_digest,
                                 p_value)
    monkeypatch.setattr(release, "RULES_DIR", rules_dir)
    release.load_release.cache_clear()
    return rules_dir


@pytest.fixture
def tiny_benchmarks(monkeypatch, tiny_canonical, tmp_path) -> dict[str, rules.Benchmark]:
    """Register tiny_cnn and tiny_transformer as benchmarks of the current version for the duration of one test
    (that version publishing this code's benchmark digest)."""
    benchmarks = {name: rules.Benchmark(name, cls, TINY_SUITE, tiny_canonical[name])
                  for name, cls in TINY_BENCHMARKS.items()}
    for name, benchmark in benchmarks.items():
        monkeypatch.setitem(rules.BENCHMARKS, name, benchmark)
    publish_test_release(monkeypatch, tmp_path, tiny_canonical)
    yield benchmarks
    release.load_release.cache_clear()


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory, tiny_canonical, tiny_videos_dir) -> dict[str, pathlib.Path]:
    """name -> one real finished run of each tiny benchmark (read-only by convention: copy to tamper)."""
    root = tmp_path_factory.mktemp("tiny_runs")
    runs = {}
    for name, config in tiny_canonical.items():
        out = root / name
        cfg = load_config(config, ["OUTPUT_DIR", str(out), "DATA.PATH_TO_DATA_DIR", str(tiny_videos_dir),
                                   "TENSORBOARD.ENABLE", "False"])
        result = train.run(cfg)
        assert result["status"] == "success", result["evals"]
        runs[name] = out
    return runs


def copy_run(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    """A copy of a run folder without its checkpoint."""
    return pathlib.Path(shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoint.pyth", "tensorboard")))


@pytest.fixture
def run_copy(tiny_runs, tmp_path) -> pathlib.Path:
    """A private copy of the real tiny_cnn run, to tamper with."""
    return copy_run(tiny_runs["tiny_cnn"], tmp_path / "tiny_cnn_copy")


_last_start_ms = 0


def _start_ms() -> int:
    """Now, in ms, and never the same twice: distinct runs never share a clock (the scorer flags copies)."""
    global _last_start_ms
    _last_start_ms = max(int(time.time() * 1000) + 1, _last_start_ms + 1)
    return _last_start_ms


def write_fake_run(out: pathlib.Path, canonical: pathlib.Path, seconds: float, seed: int, success: bool = True,
                   n_devices: int = 1, fingerprint: str = FAKE_FINGERPRINT, n_evals: int = 4,
                   division: str = "closed", overrides: tuple = (), benchmark_digest: str | None = None) -> pathlib.Path:
    """A consistent run folder of the benchmark of `canonical` that took `seconds` from run_start to
    run_stop: `n_evals` evaluations every half epoch, the last one reaching the target iff `success` (so
    epochs to target n_evals / 2), in `division`, with config `overrides` (KEY VALUE ...), and this code's
    provenance (or `benchmark_digest` instead of its benchmark digest)."""
    cfg = load_config(canonical, ["OUTPUT_DIR", str(out), "RNG_SEED", str(seed), "BENCHMARK.DIVISION", division,
                                  *map(str, overrides)])
    provenance = code_provenance()
    if benchmark_digest is not None:
        provenance["benchmark_digest"] = benchmark_digest
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(cfg.dump())
    (out / "system.json").write_text(json.dumps({**describe_system("cpu", n_devices, 1), **provenance}))
    log = RunLog(out / "run_log.txt", True)
    log.start("init_start")
    log_header(log, cfg, f"{n_devices}xcpu", provenance)
    start = _start_ms()
    stop = start + round(seconds * 1000)
    log.end("init_stop", time_ms=start)
    log.start("run_start", time_ms=start)
    log.event("train_samples", 16, time_ms=start)
    log.event("eval_samples", 1000, time_ms=start)
    target = cfg.BENCHMARK.TARGET_TOP1
    last = target + 2 if success else target - 1
    counts = [round(10 * t) for t in [target - 5 * (n_evals - i) for i in range(1, n_evals)] + [last]]
    top1 = [c / 10 for c in counts]
    evals = []
    for i, value in enumerate(top1, start=1):
        epoch, when = i / 2, start + (stop - start) * i // len(top1)
        if i % 2:
            log.start("epoch_start", time_ms=when, epoch_num=(i + 1) // 2)
        log.start("eval_start", time_ms=when, epoch_num=epoch)
        log.event("eval_accuracy", value, time_ms=when, epoch_num=epoch, correct=counts[i - 1], total=1000)
        log.end("eval_stop", time_ms=when, epoch_num=epoch)
        if i % 2 == 0 or i == n_evals:
            log.event("vmb_decode_failures", 0, time_ms=when, epoch_num=(i + 1) // 2)
            log.end("epoch_stop", time_ms=when, epoch_num=(i + 1) // 2)
        evals.append({"epoch": epoch, "top1": value, "elapsed_s": (when - start) / 1000})
    status = "success" if success else "aborted"
    log.end("run_stop", time_ms=stop, status=status, epoch_num=evals[-1]["epoch"])
    log.close()
    result = {
        "benchmark": cfg.BENCHMARK.NAME, "arch": cfg.MODEL.ARCH, "status": status,
        "time_to_target_s": (stop - start) / 1000, "run_start_ms": start, "run_stop_ms": stop,
        "target_top1": target, "best_top1": max(top1), "epochs": evals[-1]["epoch"], "evals": evals,
        "n_devices": n_devices, "device_type": "cpu", "global_batch_size": cfg.TRAIN.BATCH_SIZE, "seed": seed,
        "train_clips_per_s": 10.0, "decode_failures": 0, "config_digest": config_digest(cfg),
        "fixed_config_digest": config_digest(cfg, exclude=rules.RESOURCE_KEYS), "dataset_fingerprint": fingerprint,
        "division": cfg.BENCHMARK.DIVISION, "benchmark_version": cfg.BENCHMARK.VERSION, **provenance,
    }
    (out / "result.json").write_text(json.dumps(result, indent=2))
    return out


@pytest.fixture
def fake_run(tiny_canonical, tmp_path):
    """`fake_run(name, seconds, seed, benchmark="tiny_cnn", **kw)` writes a hand-made run into tmp_path/name."""

    def make(name: str, seconds: float, seed: int, benchmark: str = "tiny_cnn", **kwargs) -> pathlib.Path:
        return write_fake_run(tmp_path / name, tiny_canonical[benchmark], seconds, seed, **kwargs)

    return make
