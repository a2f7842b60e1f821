"""tools/score.py and tools/package.py as a user runs them, in child processes, on real tiny runs.

The tiny runs belong to two test-only benchmarks (tiny_cnn, tiny_transformer); a child process registers
them in vmb.rules.BENCHMARKS and then calls vmb.cli.score.main, exactly what tools/score.py calls. The
invalid-set case runs tools/score.py itself on a tiny run that claims to be the smoke benchmark.
"""
from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import pytest

from vmb.config import load_config
from vmb.engine import train
from release_rules import write_test_rules

pytestmark = pytest.mark.slow

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SCORE, PACKAGE = REPO_ROOT / "tools" / "score.py", REPO_ROOT / "tools" / "package.py"
TINY = {"tiny_cnn": "cnn", "tiny_transformer": "transformer"}
# What tools/score.py runs, with the tiny benchmarks registered first (argv[1]: NAME:CLASS:CONFIG,...) and published
# by the current version in a copy of the scorer's rules (argv[2]: its folder).
LAUNCH_SCORE = """
import pathlib, sys
from vmb import rules
from vmb.scoring import release
for spec in sys.argv[1].split(","):
    name, model_class, config = spec.split(":", 2)
    rules.BENCHMARKS[name] = rules.Benchmark(name, model_class, "tiny", pathlib.Path(config))
release.RULES_DIR = pathlib.Path(sys.argv[2])
from vmb.cli.score import main as score
sys.exit(score(sys.argv[3:]))
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_videos_dir, tiny_train_args, smoke_config) -> dict:
    """Canonical configs of the tiny benchmarks, one real run of each, and a tiny run named smoke_x3d."""
    root = tmp_path_factory.mktemp("score_cli")
    configs, runs = {}, {}
    for name in TINY:
        configs[name] = root / f"{name}.yaml"
        configs[name].write_text(load_config(smoke_config, tiny_train_args(
            tiny_videos_dir, root / "unused", "BENCHMARK.NAME", name, "BENCHMARK.TARGET_TOP1", 40,
            "SOLVER.MAX_EPOCH", 10)).dump())
    for name, config in [*configs.items(), ("smoke_x3d", smoke_config)]:
        runs[name] = root / "runs" / name
        overrides = tiny_train_args(tiny_videos_dir, runs[name], "BENCHMARK.TARGET_TOP1", 40, "SOLVER.MAX_EPOCH", 10,
                                    "TENSORBOARD.ENABLE", False) if name == "smoke_x3d" else \
            ["OUTPUT_DIR", str(runs[name]), "DATA.PATH_TO_DATA_DIR", str(tiny_videos_dir), "TENSORBOARD.ENABLE", "False"]
        assert train.run(load_config(config, overrides))["status"] == "success"
    return {"root": root, "runs": runs, "spec": ",".join(f"{n}:{c}:{configs[n]}" for n, c in TINY.items()),
            "rules": write_test_rules(root / "rules", configs)}


def score(setup, *args, child_env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LAUNCH_SCORE, setup["spec"], setup["rules"], *map(str, args)],
                          cwd=REPO_ROOT,
                          env=child_env, capture_output=True, text=True, timeout=120)


def tool(script: pathlib.Path, *args, child_env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *map(str, args)], cwd=REPO_ROOT, env=child_env,
                          capture_output=True, text=True, timeout=120)


def pair(setup) -> list[pathlib.Path]:
    return [setup["runs"]["tiny_cnn"], setup["runs"]["tiny_transformer"]]


def assert_no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_table(setup, child_env):
    proc = score(setup, *pair(setup), child_env=child_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "VALID, provisional: fewer than 5 runs of tiny_cnn, tiny_transformer"
    assert any(line.split()[:2] == ["benchmark", "class"] for line in lines)
    assert any(line.split()[:3] == ["tiny_cnn", "cnn", "1"] for line in lines)
    assert "S1 CPU only, 1 process; CPU" in proc.stdout
    assert "--make-reference" in proc.stdout  # no reference: says how to make one
    assert proc.stderr == ""


def test_json(setup, child_env):
    proc = score(setup, *pair(setup), "--json", child_env=child_env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["valid"] and len(data["runs"]) == 2
    result = json.loads((setup["runs"]["tiny_cnn"] / "result.json").read_text())
    assert data["benchmarks"]["tiny_cnn"]["t_bench_s"] == result["time_to_target_s"]
    assert data["suites"]["tiny"]["benchmark_score"] is None


def test_make_reference_then_score_is_one(setup, child_env, tmp_path):
    reference = tmp_path / "refs" / "tiny.json"
    proc = score(setup, "--make-reference", *pair(setup), "-o", reference, child_env=child_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"reference written to {reference}" in proc.stdout
    entry = json.loads(reference.read_text())["benchmarks"]["tiny_cnn"]
    assert entry["provenance"]["command"].startswith("python tools/score.py --make-reference")

    proc = score(setup, *pair(setup), "--reference", reference, "--json", child_env=child_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["benchmarks"]["tiny_cnn"]["score"] == pytest.approx(1.0)
    assert data["benchmarks"]["tiny_transformer"]["score"] == pytest.approx(1.0)
    assert data["suites"]["tiny"]["benchmark_score"] == pytest.approx(1.0)

    report = tmp_path / "report"
    proc = score(setup, *pair(setup), "--reference", reference, "--report", report, child_env=child_env)
    assert "suite tiny: benchmark score 1.000 = (cnn 1.000 + transformer 1.000) / 2" in proc.stdout
    assert (report / "report.md").is_file() and (report / "top1_vs_time.png").is_file()


def test_invalid_set(setup, child_env, tmp_path):
    """tools/score.py itself: a changed fixed key, a path that is not a run, a missing folder."""
    (tmp_path / "a_file").write_text("x")
    proc = tool(SCORE, setup["runs"]["smoke_x3d"], tmp_path / "a_file", tmp_path / "missing", child_env=child_env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert_no_traceback(proc)
    lines = proc.stdout.splitlines()
    assert lines[-1].startswith("INVALID: ")
    problems = lines[lines.index("problems") + 1:-2]
    smoke = setup["runs"]["smoke_x3d"]
    # The tiny run differs from the smoke config in many fixed keys (which ones depends on the smoke config).
    changed = [p for p in problems if p.startswith(f"  {smoke}: config.yaml changes fixed keys (")]
    assert len(changed) == 1 and "MODEL.NUM_CLASSES: 20 -> 4" in changed[0]
    assert changed[0].endswith("): closed division invalid; submit in the open division (BENCHMARK.DIVISION open) "
                               "to report it")
    assert problems[-2:] == [f"  {tmp_path / 'a_file'}: not a run folder", f"  {tmp_path / 'missing'}: no such folder"]
    assert all(p.startswith(f"  {smoke}: ") for p in problems[:-2])


def test_tampered_result_and_truncated_log(setup, child_env, tmp_path):
    runs = [pathlib.Path(shutil.copytree(p, tmp_path / p.name)) for p in pair(setup)]
    result = json.loads((runs[0] / "result.json").read_text())
    result["time_to_target_s"] /= 2  # twice as fast on paper
    (runs[0] / "result.json").write_text(json.dumps(result))
    log = (runs[1] / "run_log.txt").read_text().splitlines()
    (runs[1] / "run_log.txt").write_text("\n".join(log[:-1]) + "\n")  # cut before run_stop
    proc = score(setup, *runs, "--json", child_env=child_env)
    assert proc.returncode == 1
    assert_no_traceback(proc)
    reasons = json.loads(proc.stdout)["reasons"]
    assert f"{runs[0]}: result.json: time_to_target_s is {result['time_to_target_s']} but the log gives " \
           f"{result['time_to_target_s'] * 2} (run_stop - run_start)" in reasons
    assert f"{runs[1]}: run_log.txt: no run_stop (the run did not finish, or the log is truncated)" in reasons


def test_package_round_trip_and_tampering(setup, child_env, tmp_path):
    out = tmp_path / "submission"
    proc = tool(PACKAGE, *pair(setup), "-o", out, child_env=child_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "submission.tar.gz").is_file()
    assert f"verify with: python tools/score.py {out}" in proc.stdout
    proc = score(setup, out, child_env=child_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = out / "runs" / "tiny_cnn" / "config.yaml"
    config.write_text(config.read_text().replace("BASE_LR: 0.1", "BASE_LR: 0.2"))
    proc = score(setup, out, child_env=child_env)
    assert proc.returncode == 1
    assert f"  {out}: runs/tiny_cnn/config.yaml: checksum mismatch (changed after packaging, or unreadable)" \
        in proc.stdout.splitlines()
    assert "SOLVER.BASE_LR: 0.1 -> 0.2" in proc.stdout


def test_usage_errors_are_one_line(setup, child_env, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    proc = score(setup, *pair(setup), "--reference", bad, child_env=child_env)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"error: {bad}: not valid JSON") and len(proc.stderr.splitlines()) == 1
    proc = tool(SCORE, "--make-reference", *pair(setup), child_env=child_env)
    assert proc.returncode == 2 and "--make-reference needs -o FILE" in proc.stderr
    proc = tool(PACKAGE, tmp_path, "-o", tmp_path / "out", child_env=child_env)
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: {tmp_path}: not a run folder")
    assert_no_traceback(proc)
