"""Benchmark versions: the published digest is the current code's, the timed path covers what a run imports,
changes off the timed path never touch it, and runs are judged by the rules and reference of their version."""
from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import grimp
import pytest

from vmb.backends import BACKENDS
from vmb.record import provenance
from vmb.scoring import release
from vmb.scoring.assess import assess, check_path, make_reference
from vmb.scoring.reference import load_reference, write_reference

from conftest import publish_test_release

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
OLD_CODE = "sha256:" + "0d" * 32
CUT_A_RELEASE = "bump BENCHMARK.VERSION, remake the smoke reference and publish the digest (docs/RELEASES.md)"


def _digest(root: pathlib.Path) -> str:
    files = provenance.source_files(root / "vmb", root / "configs")
    return provenance.tree_digest(provenance.benchmark_files(files))


# ------------------------------------------------------------------------------------------- the current code

def test_the_current_code_is_the_current_versions_published_release():
    """Fails after any change to the timed path or a canonical config until a new version publishes it."""
    published = release.load_release(release.current_version())
    code = release.release_of_code(published.version, published.p_value, published.min_reference_runs)
    assert code["benchmark_digest"] == published.benchmark_digest, f"the timed path changed: {CUT_A_RELEASE}"
    assert {name: (b.target_top1, b.fixed_config_digest) for name, b in published.benchmarks.items()} == {
        name: (b["target_top1"], b["fixed_config_digest"]) for name, b in code["benchmarks"].items()}, \
        f"a canonical config changed: {CUT_A_RELEASE}"


def _module_file(module: str) -> str:
    path = pathlib.Path(*module.split("."))
    return f"{path}/__init__.py" if (REPO_ROOT / path).is_dir() else f"{path}.py"


def test_the_timed_path_is_what_run_net_imports_and_the_backends_it_loads():
    graph = grimp.build_graph("vmb")
    modules = graph.find_upstream_modules("vmb.cli.run_net") | {"vmb.cli.run_net"}
    modules |= {b.entry.partition(":")[0] for b in BACKENDS.values()}  # loaded on demand
    packages = {".".join(m.split(".")[:i]) for m in modules for i in range(1, m.count(".") + 1)}  # their __init__
    imported = {_module_file(m) for m in modules | packages}
    covered = {name for name in provenance.benchmark_files(provenance.source_files()) if name.endswith(".py")}
    missing = imported - covered - {"vmb/__init__.py"}  # the package version only: recorded as vmb_version
    assert not missing, f"run_net imports files outside vmb.record.provenance.TIMED_PATH: {sorted(missing)}"
    extra = covered - imported
    assert not extra, f"TIMED_PATH covers files run_net never loads: {sorted(extra)}"


def test_changes_off_the_timed_path_leave_the_digest_and_others_change_it(tmp_path):
    for folder in ("vmb", "configs"):
        shutil.copytree(REPO_ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    before = _digest(tmp_path)
    assert before == provenance.code_provenance()["benchmark_digest"]
    for off_path in ("vmb/scoring/report.py", "vmb/scoring/validate.py", "vmb/speed/infer.py", "vmb/cli/score.py",
                     "vmb/reporting.py", "configs/dryrun/X3D_M.yaml", "vmb/scoring/rules/1.0/compliance.yaml"):
        with open(tmp_path / off_path, "a") as handle:
            handle.write("\n# a fixed typo\n")
    (tmp_path / "vmb/scoring/new_tool.py").write_text("x = 1\n")
    assert _digest(tmp_path) == before
    for on_path in ("vmb/engine/train.py", "vmb/data/video.py", "configs/smoke/X3D.yaml", "vmb/record/runlog.py"):
        copy = tmp_path.with_name(tmp_path.name + "_" + on_path.replace("/", "_"))
        shutil.copytree(tmp_path, copy)
        with open(copy / on_path, "a") as handle:
            handle.write("\n# changed\n")
        assert _digest(copy) != before, on_path


def test_a_scorer_change_leaves_the_shipped_reference_and_its_runs_valid(tmp_path):
    """A copy of the checkout with its scorer and docs edited still scores the shipped runs VALID, 1.0."""
    for folder in ("vmb", "configs", "references", "tools"):
        shutil.copytree(REPO_ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    with open(tmp_path / "vmb/scoring/report.py", "a") as handle:
        handle.write("\n# a scorer fix\n")
    proc = subprocess.run([sys.executable, "tools/score.py", "references/smoke_runs", "--reference",
                           "references/smoke.json", "--json"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    scored = json.loads(proc.stdout)
    assert scored["valid"] and scored["suites"]["smoke"]["benchmark_score"] == 1.0


# ------------------------------------------------------------------------------------------- versions of runs

def _as_version(run: pathlib.Path, version: str) -> pathlib.Path:
    """Make the fake run declare `version` everywhere it is recorded."""
    result = json.loads((run / "result.json").read_text())
    (run / "result.json").write_text(json.dumps({**result, "benchmark_version": version}))
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("VERSION: '1.0'", f"VERSION: '{version}'"))
    log = (run / "run_log.txt").read_text()
    (run / "run_log.txt").write_text(log.replace('"vmb_benchmark_version", "value": "1.0"',
                                                 f'"vmb_benchmark_version", "value": "{version}"'))
    return run


def test_an_unknown_version_is_refused_in_one_line(fake_run, tiny_benchmarks):
    run = _as_version(fake_run("a", 10, 0), "0.7")
    assert check_path(run).reasons == ["result.json: benchmark version '0.7' is not one this scorer knows (known: "
                                       "1.0); score it with the VMB release that made it"]
    a = assess([run])
    assert not a.valid and not a.benchmarks


def test_a_run_declares_one_version_everywhere(fake_run, tiny_benchmarks):
    run = fake_run("a", 10, 0)
    result = json.loads((run / "result.json").read_text())
    (run / "result.json").write_text(json.dumps({**result, "benchmark_version": "1.0.1"}))
    publish_test_release(pytest.MonkeyPatch(), run.parent, {}, version="1.0.1")
    try:
        reasons = check_path(run).reasons
    finally:
        release.load_release.cache_clear()
    assert "result.json: benchmark_version is '1.0.1' but the log's vmb_benchmark_version is '1.0'" in reasons
    assert "result.json: benchmark_version is '1.0.1' but config.yaml's BENCHMARK.VERSION is not" in reasons


def test_an_older_version_is_judged_by_its_own_rules_and_reference(fake_run, tiny_benchmarks, tiny_canonical,
                                                                    monkeypatch, tmp_path):
    publish_test_release(monkeypatch, tmp_path, tiny_canonical, version="0.9", benchmark_digest=OLD_CODE,
                         p_value=0.2)
    assert release.known_versions() == ["0.9", "1.0"]
    old_run = {"benchmark_digest": OLD_CODE, "overrides": ("BENCHMARK.VERSION", "0.9")}
    old = [fake_run(f"old{seed}", 100, seed, n_evals=n, **old_run) for seed, n in enumerate([4, 4, 5, 5, 6])]
    made = assess(old)
    assert made.valid, made.all_reasons()  # closed: its code is what 0.9 publishes, not this code
    path = tmp_path / "ref_0.9.json"
    write_reference(make_reference(made, "test"), path)
    old_reference = load_reference(path)
    assert old_reference.entries["tiny_cnn"].benchmark_version == "0.9"
    scored = assess([fake_run("sub", 50, 0, n_evals=5, **old_run)], old_reference)
    assert scored.valid, scored.all_reasons()
    assert scored.benchmarks["tiny_cnn"].convergence.p_threshold == 0.2  # 0.9's rule, not 1.0's 0.05
    assert scored.benchmarks["tiny_cnn"].score == pytest.approx(2.0)
    # A run of the current version against 0.9's reference, and 0.9's runs with this code's digest.
    current = assess([fake_run("new", 50, 0)], old_reference)
    assert current.all_reasons() == ["tiny_cnn: the runs are benchmark version 1.0 but the reference is of version "
                                     "0.9; score them with version 1.0's reference"]
    wrong_code = fake_run("wrong", 50, 1, overrides=("BENCHMARK.VERSION", "0.9"))
    assert check_path(wrong_code).reasons[0].startswith("code is not benchmark 0.9's (benchmark digest ")


def test_publishing_rewrites_the_versions_own_file_in_place(tmp_path, monkeypatch):
    """`python -m vmb.scoring.release -o FILE` computes before it writes, so FILE may be the file it reads."""
    rules_dir = pathlib.Path(shutil.copytree(release.RULES_DIR, tmp_path / "rules"))
    own = rules_dir / release.current_version() / release.RELEASE_FILE
    own.write_text(own.read_text().replace("p_value: 0.05", "p_value: 0.01"))
    monkeypatch.setattr(release, "RULES_DIR", rules_dir)
    release.load_release.cache_clear()
    try:
        assert release.main(["-o", str(own)]) == 0
        release.load_release.cache_clear()
        published = release.load_release(release.current_version())
    finally:
        release.load_release.cache_clear()
    assert published.benchmark_digest == provenance.code_provenance()["benchmark_digest"]
    assert published.p_value == 0.01  # the version's own parameters are kept
    assert own.read_text().startswith("# Benchmark version ")
