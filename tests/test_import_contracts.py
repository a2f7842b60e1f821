"""The layers hold: import-linter checks the contracts in .importlinter (scoring never imports torch, engine or data;
the engine never imports scoring or speed; config imports none of the layers above it; data never imports the
engine; library code never imports vmb.cli), and a broken one fails the suite with its import chain."""
import pathlib
import shutil
import subprocess
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    lint_imports = shutil.which("lint-imports", path=str(pathlib.Path(sys.executable).parent)) or "lint-imports"
    proc = subprocess.run([lint_imports, "--no-cache"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "5 kept, 0 broken" in proc.stdout
