"""The report folder (Markdown, HTML, PNG plots), the terminal table and the JSON document."""
from __future__ import annotations

import json

import matplotlib.image
import pytest

from vmb.scoring import report
from vmb.scoring.reference import load_reference, write_reference
from vmb.scoring.assess import assess, make_reference

pytestmark = pytest.mark.usefixtures("tiny_benchmarks")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def scored(fake_run, tiny_runs, tmp_path):
    """An assessment with a reference: the real tiny runs against a reference made from them, plus two more
    hand-made CNN runs and one that missed the target."""
    reference_path = tmp_path / "ref.json"
    write_reference(make_reference(assess(list(tiny_runs.values())), "test"), reference_path)
    fingerprint = json.loads((tiny_runs["tiny_cnn"] / "result.json").read_text())["dataset_fingerprint"]
    extra = [fake_run("cnn_s1", 1.0, 1, fingerprint=fingerprint), fake_run("cnn_s2", 1.2, 2, fingerprint=fingerprint),
             fake_run("cnn_failed", 3.0, 3, success=False, fingerprint=fingerprint)]
    return assess([*tiny_runs.values(), *extra], load_reference(reference_path))


def test_report_files(scored, tmp_path):
    assert scored.valid, scored.all_reasons()
    out = tmp_path / "report"
    written = report.write_report(scored, out)
    names = sorted(p.name for p in written)
    assert names == ["report.html", "report.md", "scores.png", "time_to_target.png", "top1_vs_time.png"]
    for png in out.glob("*.png"):
        assert png.read_bytes().startswith(PNG_MAGIC)
        height, width, _ = matplotlib.image.imread(png).shape
        assert height > 100 and width > 100
    markdown = (out / "report.md").read_text()
    assert "| benchmark | class | runs | failed | t_bench |" in markdown
    assert "| tiny_cnn | cnn | 4 | 1 |" in markdown
    assert "benchmark score" in markdown and "![validation top-1" in markdown
    assert "cnn_failed" in markdown and "aborted" in markdown
    html = (out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and '<img src="top1_vs_time.png"' in html
    assert "<td>tiny_transformer</td>" in html


def test_report_without_reference_has_no_score_plot(fake_run, tmp_path):
    a = assess([fake_run("a", 10, 0)])
    written = report.write_report(a, tmp_path / "out")
    assert {p.name for p in written} == {"report.md", "report.html", "top1_vs_time.png", "time_to_target.png"}
    assert "--make-reference" in (tmp_path / "out" / "report.md").read_text()


def test_submitted_strings_are_escaped(fake_run, tmp_path):
    run = fake_run("a", 10, 0)
    system = json.loads((run / "system.json").read_text())
    system["host_processor_model_name"] = "<script>alert(1)</script> | x"
    (run / "system.json").write_text(json.dumps(system))
    report.write_report(assess([run]), tmp_path / "out")
    assert "<script>" not in (tmp_path / "out" / "report.html").read_text()
    assert "<script>" not in (tmp_path / "out" / "report.md").read_text()
    assert "\\| x" in (tmp_path / "out" / "report.md").read_text()


def test_text_and_json(scored):
    text = report.format_text(scored)
    assert text.splitlines()[-1] == "VALID, provisional: fewer than 5 runs of tiny_cnn, tiny_transformer"
    assert "suite tiny: benchmark score" in text
    data = json.loads(json.dumps(report.to_json(scored)))
    assert data["valid"] and data["reasons"] == []
    assert data["benchmarks"]["tiny_transformer"]["score"] == pytest.approx(1.0)
    assert data["benchmarks"]["tiny_cnn"]["failed"] == 1
    assert [r["system"] for r in data["runs"]] == ["S1"] * 5


def test_unwritable_report_folder_is_one_line(fake_run, tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(report.ReportError, match="cannot write the report to .*a_file/out"):
        report.write_report(assess([fake_run("a", 10, 0)]), tmp_path / "a_file" / "out")
