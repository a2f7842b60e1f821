"""Resume that scores: a run killed with SIGKILL at several points and rerun with the same command completes,
and the scorer accepts it; its evaluations are exactly those of an uninterrupted run with the same seed.

The kills are real (`kill -9` semantics: no cleanup), placed exactly by vmb.record.runlog's VMB_KILL_AFTER
fault ("KEY:N": the process kills itself right after writing its N-th KEY event).
"""
from __future__ import annotations

import pathlib
import signal
import subprocess
import sys

import pytest

from vmb.config import load_config
from vmb import rules
from vmb.record.faults import KILL_AFTER_ENV
from vmb.record.runlog import find, read_events
from vmb.record.schema import CHECKPOINT, RESUME, RUN_LOG, effective_evals
from vmb.scoring.assess import assess, check_path
from conftest import TINY_SUITE, publish_test_release

from vmb.scoring import release

pytestmark = pytest.mark.slow

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
RUN_NET = REPO_ROOT / "tools" / "run_net.py"
NAME = "tiny_resume"
# The tiny X3D reaches 60 % at epoch 8 with seed 0 on the tiny set (evaluations every half epoch), so every
# kill below falls inside the run.
TARGET, MAX_EPOCH = "60", "12"

# (fault, where it strikes) in the order the reruns meet them.
KILLS = [
    ("init_start:1", "before run_start"),
    (f"{CHECKPOINT}:1", "right after the checkpoint of epoch 1"),
    ("eval_start:2", "during the evaluation at epoch 2.0 (resumed from epoch 1)"),
    ("eval_accuracy:1", "mid-epoch, right after the evaluation at epoch 1.5"),
]


@pytest.fixture
def resume_benchmark(tmp_path, monkeypatch, tiny_videos_dir, tiny_train_args, smoke_config) -> pathlib.Path:
    """A test-only benchmark (canonical config in tmp_path) registered for this test."""
    cfg = load_config(smoke_config, tiny_train_args(tiny_videos_dir, tmp_path / "unused", "BENCHMARK.NAME", NAME,
                                                    "BENCHMARK.TARGET_TOP1", TARGET, "SOLVER.MAX_EPOCH", MAX_EPOCH,
                                                    "TRAIN.EVAL_PERIOD", "0.5", "TENSORBOARD.ENABLE", "False"))
    canonical = tmp_path / f"{NAME}.yaml"
    canonical.write_text(cfg.dump())
    monkeypatch.setitem(rules.BENCHMARKS, NAME, rules.Benchmark(NAME, "cnn", TINY_SUITE, canonical))
    publish_test_release(monkeypatch, tmp_path, {NAME: canonical})
    yield canonical
    release.load_release.cache_clear()


def run_net(canonical: pathlib.Path, out: pathlib.Path, env: dict, kill_after: str | None = None):
    env = {**env, **({KILL_AFTER_ENV: kill_after} if kill_after else {})}
    return subprocess.run([sys.executable, str(RUN_NET), "--cfg", str(canonical), "OUTPUT_DIR", str(out)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_killed_at_four_points_then_scored(resume_benchmark, tmp_path, child_env):
    uninterrupted = tmp_path / "uninterrupted"
    assert run_net(resume_benchmark, uninterrupted, child_env).returncode == 0

    out = tmp_path / "killed"
    for fault, where in KILLS:
        proc = run_net(resume_benchmark, out, child_env, fault)
        assert proc.returncode == -signal.SIGKILL, f"{where}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
        if fault.startswith("init_start"):
            assert not find(read_events(out / RUN_LOG), "run_start")
    proc = run_net(resume_benchmark, out, child_env)
    assert proc.returncode == 0, proc.stderr[-3000:]

    check = check_path(out)
    assert check.reasons == []
    assessment = assess([out])
    assert assessment.valid and assessment.benchmarks[NAME].summary.t_bench == check.run.result["time_to_target_s"]

    events = read_events(out / RUN_LOG)
    assert len(list(out.glob("run_log.before_run_start.*.txt"))) == 1  # nothing timed: that attempt was set aside
    assert [e.value for e in find(events, RESUME)] == [1, 1, 1]  # three reruns, each from the epoch-1 checkpoint
    assert len(find(events, "run_start")) == len(find(events, "init_start")) == 1
    logged, standing = find(events, "eval_accuracy"), effective_evals(events)
    # Superseded: epoch 1.5 evaluated before the third kill (which struck during 2.0's) and before the fourth.
    assert [e.metadata["epoch_num"] for e in logged if e not in standing] == [1.5, 1.5]
    # The resumed run repeats the interrupted training exactly: the same evaluations as without a kill.
    reference = effective_evals(read_events(uninterrupted / RUN_LOG))
    assert [(e.metadata["epoch_num"], e.metadata["correct"]) for e in standing] == \
        [(e.metadata["epoch_num"], e.metadata["correct"]) for e in reference]
    # The clock never stopped: the interrupted run took longer than the uninterrupted one.
    assert check.run.result["time_to_target_s"] > check_path(uninterrupted).run.result["time_to_target_s"]
