"""Submission packages: a round trip through make_package and the scorer, and tampering detected by name."""
from __future__ import annotations

import hashlib
import os
import tarfile

import pytest

from vmb.scoring.package import FILE_CAP, MANIFEST, PackageError, collect_runs, make_package, verify_package
from vmb.record.schema import RUN_FILES
from vmb.scoring.assess import assess

pytestmark = pytest.mark.usefixtures("tiny_benchmarks")


@pytest.fixture
def package(tiny_runs, tmp_path):
    out = tmp_path / "submission"
    make_package(list(tiny_runs.values()), out)
    return out


def test_round_trip(package, tiny_runs):
    names = sorted(tiny_runs)
    assert sorted(p.name for p in (package / "runs").iterdir()) == names
    for name in names:
        assert sorted(p.name for p in (package / "runs" / name).iterdir()) == sorted(RUN_FILES)  # no checkpoint
    manifest = (package / MANIFEST).read_text().splitlines()
    assert len(manifest) == 2 * len(RUN_FILES) + 1  # and README.md
    digest, path = manifest[0].split("  ", 1)
    assert digest == hashlib.sha256((package / path).read_bytes()).hexdigest()
    readme = (package / "README.md").read_text()
    assert f"python tools/score.py {package.name}" in readme and "tiny_cnn" in readme
    with tarfile.open(package.with_name("submission.tar.gz")) as archive:
        members = archive.getnames()
    assert f"submission/{MANIFEST}" in members and "submission/runs/tiny_cnn/run_log.txt" in members

    assert verify_package(package) == []
    runs, reasons = collect_runs([package])
    assert reasons == [] and [p.name for p in runs] == names
    a = assess(runs)
    assert a.valid, a.all_reasons()


def test_tampered_file_is_named(package):
    result = package / "runs" / "tiny_cnn" / "result.json"
    result.write_text(result.read_text().replace('"seed": 0', '"seed": 0 '))
    assert verify_package(package) == [f"{package}: runs/tiny_cnn/result.json: checksum mismatch (changed after "
                                       "packaging, or unreadable)"]
    runs, reasons = collect_runs([package])
    assert not assess(runs, set_reasons=reasons).valid


def test_missing_extra_and_linked_files_are_named(package, tmp_path):
    (package / "runs" / "tiny_transformer" / "system.json").unlink()
    (package / "runs" / "tiny_cnn" / "notes.txt").write_text("hi")
    os.symlink(tmp_path, package / "runs" / "link")
    assert sorted(verify_package(package)) == sorted([
        f"{package}: runs/link: a symbolic link (a package holds plain files only)",
        f"{package}: runs/tiny_cnn/notes.txt: extra file, not in {MANIFEST}",
        f"{package}: runs/tiny_transformer/system.json: missing (listed in {MANIFEST})"])


def test_a_linked_or_oversized_file_keeps_the_scorer_out(package, tmp_path):
    """collect_runs reads nothing of a package with a link or an oversized file: no run of it is scored."""
    outside = tmp_path / "outside.json"
    outside.write_text('{"secret": "MARKER"}')
    (package / "runs" / "tiny_cnn" / "system.json").unlink()
    (package / "runs" / "tiny_cnn" / "system.json").symlink_to(outside)
    os.truncate(package / "runs" / "tiny_transformer" / "result.json", FILE_CAP + 1)  # sparse: no disk used
    runs, reasons = collect_runs([package])
    assert runs == [] and reasons == [
        f"{package}: runs/tiny_cnn/system.json: a symbolic link, not followed (a submission holds plain files and "
        "folders only)",
        f"{package}: runs/tiny_transformer/result.json: 1.0 MiB, over its size cap (64 MiB for a run_log.txt, 1 MiB "
        "for any other file)"]
    assert not assess(runs, set_reasons=reasons).valid


def test_malformed_manifest(package):
    with open(package / MANIFEST, "a") as handle:
        handle.write("not a checksum line\n")
    assert verify_package(package) == [f"{package}: {MANIFEST}:10: not a `<sha256>  <path>` line"]


def test_package_without_runs(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / MANIFEST).write_text("")
    runs, reasons = collect_runs([tmp_path / "empty"])
    assert runs == [] and reasons == [f"{tmp_path / 'empty'}: a package without runs (runs/ is missing or empty)"]


def test_refusals(tiny_runs, package, tmp_path):
    with pytest.raises(PackageError, match="not empty"):
        make_package(list(tiny_runs.values()), package)
    with pytest.raises(PackageError, match="not a run folder"):
        make_package([tmp_path], tmp_path / "out1")
    with pytest.raises(PackageError, match="two runs are named tiny_cnn"):
        make_package([tiny_runs["tiny_cnn"], tiny_runs["tiny_cnn"]], tmp_path / "out2")
    with pytest.raises(PackageError, match="no runs"):
        make_package([], tmp_path / "out3")
