"""Code provenance (the source digest, the git state), the run-log header and the rules' hyperparameter table."""
from __future__ import annotations

import hashlib
import shutil
import subprocess

import pytest

import vmb
from vmb.config import config_digest, load_config
from vmb import rules
from vmb.record import provenance
from vmb.record.header import log_header
from vmb.record.provenance import code_provenance, git_state, source_files, tree_digest
from vmb.record.runlog import RunLog, find, read_events
from vmb.record.schema import BENCHMARK_DIGEST, BENCHMARK_VERSION, CONFIG_DIGEST, SOURCE_DIGEST

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


@pytest.fixture
def checkout(tmp_path):
    """A copy of the package and the canonical configs laid out as a checkout: root/vmb, root/configs."""
    root = tmp_path / "checkout"
    shutil.copytree(provenance.PACKAGE_DIR, root / "vmb", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(rules.CONFIG_DIR, root / "configs")
    return root


def test_code_provenance_fields_and_a_stable_digest():
    found = code_provenance()
    assert set(found) == {"vmb_version", "benchmark_digest", "source_digest", "git_commit", "git_dirty"}
    assert found["vmb_version"] == vmb.__version__
    assert found["source_digest"].startswith("sha256:") and len(found["source_digest"]) == 7 + 64
    assert code_provenance() == found
    assert tree_digest(source_files()) == found["source_digest"]  # computed afresh: the same


def test_source_files_are_the_packages_code_and_the_canonical_configs():
    names = source_files()
    assert "vmb/record/provenance.py" in names and "vmb/scoring/rules/1.0/compliance.yaml" in names
    assert "configs/X3D_M.yaml" in names and "configs/smoke/X3D.yaml" in names
    assert all(n.startswith(("vmb/", "configs/")) and n.endswith((".py", ".yaml")) for n in names)
    assert not any("__pycache__" in n for n in names)


def test_digest_is_the_pairs_of_names_and_file_digests(tmp_path):
    (tmp_path / "a.py").write_bytes(b"x = 1\n")
    (tmp_path / "b.yaml").write_bytes(b"K: 2\n")
    files = {"vmb/b.yaml": tmp_path / "b.yaml", "vmb/a.py": tmp_path / "a.py"}
    lines = "".join(f"{name} {hashlib.sha256(files[name].read_bytes()).hexdigest()}\n" for name in sorted(files))
    assert tree_digest(files) == "sha256:" + hashlib.sha256(lines.encode()).hexdigest()


def test_a_copy_has_the_same_digest_and_one_changed_byte_another(checkout):
    original = tree_digest(source_files(checkout / "vmb", checkout / "configs"))
    assert original == tree_digest(source_files())
    target = checkout / "vmb" / "scoring" / "score.py"
    data = bytearray(target.read_bytes())
    data[-2] ^= 1
    target.write_bytes(bytes(data))
    assert tree_digest(source_files(checkout / "vmb", checkout / "configs")) != original


def test_a_changed_config_changes_the_digest(checkout):
    original = tree_digest(source_files(checkout / "vmb", checkout / "configs"))
    with open(checkout / "configs" / "X3D_M.yaml", "a") as handle:
        handle.write("\n")
    assert tree_digest(source_files(checkout / "vmb", checkout / "configs")) != original


def test_a_wheel_layout_has_the_checkouts_digest(checkout):
    """Installed, the configs live inside the package (vmb/configs/): counted once, under the same names."""
    original = tree_digest(source_files(checkout / "vmb", checkout / "configs"))
    shutil.move(checkout / "configs", checkout / "vmb" / "configs")
    files = source_files(checkout / "vmb", checkout / "vmb" / "configs")
    assert not any(n.startswith("vmb/configs/") for n in files)
    assert tree_digest(files) == original


def test_git_fields_are_none_outside_a_checkout(tmp_path):
    assert git_state(tmp_path) == (None, None)


def test_git_fields_are_none_without_git(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no git on it
    assert git_state(provenance.PACKAGE_DIR.parent) == (None, None)


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                   capture_output=True)


@needs_git
def test_git_commit_and_dirty_in_a_checkout(checkout):
    git(checkout, "init", "-q")
    git(checkout, "add", "vmb/__init__.py")
    git(checkout, "commit", "-q", "-m", "init")
    head = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    init = checkout / "vmb" / "__init__.py"
    assert git_state(checkout, (init,)) == (head.strip(), False)
    init.write_text(init.read_text() + "# changed\n")
    assert git_state(checkout, (init,)) == (head.strip(), True)
    # A folder inside the work tree is not the top of a checkout (a virtual environment in a checkout).
    assert git_state(checkout / "vmb") == (None, None)


def test_logged_hyperparameters_follow_the_table():
    cfg = load_config(rules.BENCHMARKS["x3d_m"].config, ["BENCHMARK.DIVISION", "open", "RNG_SEED", "3"])
    logged = rules.logged_hyperparameters(cfg)
    assert list(logged) == list(rules.LOGGED_HYPERPARAMETERS)
    assert logged["seed"] == 3 and logged["submission_division"] == "open"
    assert logged["opt_base_learning_rate"] == cfg.SOLVER.BASE_LR and logged["opt_momentum"] == cfg.SOLVER.MOMENTUM
    assert logged["target_top1"] == cfg.BENCHMARK.TARGET_TOP1
    assert "BENCHMARK.DIVISION" in rules.RESOURCE_KEYS


def test_header_logs_each_key_once(tmp_path):
    cfg = load_config(rules.BENCHMARKS["smoke_x3d"].config)
    log = RunLog(tmp_path / "run_log.txt", True)
    log_header(log, cfg, "2xcpu", {"benchmark_digest": "sha256:" + "1" * 64, "source_digest": "sha256:" + "0" * 64})
    log.close()
    events = read_events(tmp_path / "run_log.txt")
    assert [e.value for e in find(events, "submission_platform")] == ["2xcpu"]
    for key, value in rules.logged_hyperparameters(cfg).items():
        assert [e.value for e in find(events, key)] == [value], key
    assert [e.value for e in find(events, SOURCE_DIGEST)] == ["sha256:" + "0" * 64]
    assert [e.value for e in find(events, BENCHMARK_DIGEST)] == ["sha256:" + "1" * 64]
    assert [e.value for e in find(events, BENCHMARK_VERSION)] == [cfg.BENCHMARK.VERSION]
    assert [e.value for e in find(events, CONFIG_DIGEST)] == [config_digest(cfg)]
