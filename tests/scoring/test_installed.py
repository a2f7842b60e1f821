"""A non-editable install (a wheel, as `pip install .` builds it) finds its canonical configs and compliance
rules inside the package and scores the shipped smoke reference runs, with no checkout in sight."""
from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

from vmb.record import provenance

pytestmark = pytest.mark.slow

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SCORE = "import sys; from vmb.cli.score import main; sys.exit(main(sys.argv[1:]))"
WHERE = ("from vmb import rules; from vmb.record import provenance; "
         "print(rules.CONFIG_DIR); print(provenance.code_provenance()['source_digest']); "
         "print(provenance.code_provenance()['benchmark_digest'])")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> pathlib.Path:
    """The vmb wheel built from (a copy of) this checkout, unpacked as site-packages would hold it."""
    source, wheels = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    shutil.copy(REPO_ROOT / "setup.py", source)
    for folder in ("vmb", "configs"):  # what setup.py packages; the copy keeps build/ out of the checkout
        shutil.copytree(REPO_ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(source)], check=True, capture_output=True, timeout=300)
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(next(wheels.glob("vmb-*.whl"))) as wheel:
        wheel.extractall(site)
    return site


def run_installed(site: pathlib.Path, cwd: pathlib.Path, *argv: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "HOME": str(cwd)}
    # The venv's site-packages stay visible through sys.executable; the checkout does not (cwd elsewhere).
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_installed_package_holds_configs_and_rules(site):
    assert (site / "vmb/configs/X3D_M.yaml").is_file() and (site / "vmb/configs/smoke/MVIT.yaml").is_file()
    assert (site / "vmb/scoring/rules/1.0/compliance.yaml").is_file()
    assert (site / "vmb/scoring/rules/1.0/release.yaml").is_file()


def test_installed_package_finds_its_configs_and_has_the_checkouts_digest(site, tmp_path):
    proc = run_installed(site, tmp_path, "-c", WHERE)
    assert proc.returncode == 0, proc.stderr
    config_dir, digest, benchmark_digest = proc.stdout.split()
    assert pathlib.Path(config_dir) == site / "vmb" / "configs"
    assert digest == provenance.code_provenance()["source_digest"]  # the same code, however it is installed
    assert benchmark_digest == provenance.code_provenance()["benchmark_digest"]


def test_installed_package_scores_the_shipped_reference_runs(site, tmp_path):
    proc = run_installed(site, tmp_path, "-c", SCORE, str(REPO_ROOT / "references/smoke_runs"), "--reference",
                         str(REPO_ROOT / "references/smoke.json"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "benchmark_score" in proc.stdout or "benchmark score" in proc.stdout
