"""The shipped smoke reference: its runs are packaged with it, verify, and score exactly 1.0 against it.

If this fails after a change to configs/smoke/*.yaml, the reference is stale: rerun the smoke runs and
remake it (README of references/).
"""
import json
import pathlib
import subprocess
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_shipped_smoke_reference_verifies_and_scores_one():
    proc = subprocess.run([sys.executable, "tools/score.py", "references/smoke_runs", "--reference",
                           "references/smoke.json", "--json"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    reference = json.loads((REPO_ROOT / "references/smoke.json").read_text())
    assert set(reference["benchmarks"]) == {"smoke_x3d", "smoke_mvit"}
    for entry in reference["benchmarks"].values():
        assert len(entry["provenance"]["runs"]) >= 5 and not entry["provisional"]
    scored = json.loads(proc.stdout)
    assert scored["valid"] and not scored["reasons"]
    # Every run the reference was made from ships with it.
    assert len(scored["runs"]) == sum(len(e["provenance"]["runs"]) for e in reference["benchmarks"].values())
    assert scored["suites"]["smoke"]["scores"] == {"cnn": 1.0, "transformer": 1.0}
    assert scored["suites"]["smoke"]["benchmark_score"] == 1.0
