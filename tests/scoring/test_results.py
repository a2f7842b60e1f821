"""The results site (tools/results.py): built from submission packages of hand-made runs of the tiny benchmarks,
scored against a reference made from other hand-made runs; its tables read back with html.parser and csv.

`build_example_site` is also what tests/scoring/test_results_browser.py opens in a browser.
"""
from __future__ import annotations

import csv
import json
import os
import pathlib
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from vmb.cli.results import main
from vmb.scoring.assess import assess, make_reference
from vmb.scoring.package import make_package, verify_package, write_manifest
from vmb.scoring.reference import load_reference, write_reference
from vmb.scoring.results import page, table
from vmb.scoring.results.site import csv_cell
from vmb.scoring.package import RUN_LOG_CAP
from vmb.scoring.results.submission import Submission, assess_submission

pytestmark = pytest.mark.usefixtures("tiny_benchmarks")
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
HOSTILE = '<script>alert(1)</script> "quotes"'
# name -> (CNN seconds, transformer seconds) against a reference of 100 s each: alpha scores 1.25 and 2.5 (benchmark
# score 1.875), beta 2.0 and 0.5 (1.25): beta has the better CNN score but ranks second.
EXAMPLE = {"alpha": (80.0, 40.0), "beta": (50.0, 200.0)}


def make_reference_file(fake_run, tmp_path: pathlib.Path) -> pathlib.Path:
    runs = [fake_run("ref/cnn", 100.0, 0), fake_run("ref/transformer", 100.0, 0, benchmark="tiny_transformer")]
    path = tmp_path / "reference.json"
    write_reference(make_reference(assess(runs), "test"), path)
    return path


def make_submission(fake_run, tmp_path: pathlib.Path, name: str, cnn_s: float, transformer_s: float,
                    cpu: str = "Test CPU", accelerator: str | None = None) -> pathlib.Path:
    """A valid package of one run of each tiny benchmark, its system.json naming `cpu` (and `accelerator`), its
    manifest rewritten so that the checksums hold."""
    runs = [fake_run(f"runs_{name}/cnn_s0", cnn_s, 0),
            fake_run(f"runs_{name}/transformer_s0", transformer_s, 0, benchmark="tiny_transformer")]
    folder = tmp_path / "submissions" / name
    make_package(runs, folder)
    for system_file in folder.glob("runs/*/system.json"):
        system = json.loads(system_file.read_text())
        system["host_processor_model_name"] = cpu
        if accelerator is not None:
            system["accelerator_model_name"] = accelerator
        system_file.write_text(json.dumps(system))
    write_manifest(folder)
    return folder


def build_example_site(fake_run, tmp_path: pathlib.Path, capsys, monkeypatch) -> tuple[pathlib.Path, str]:
    """Three submissions (alpha and beta valid, the second naming a hostile CPU; "tampered" with a result.json
    edited after packaging) built into tmp_path/site, from tmp_path as the working folder (so that the pages show
    the short paths a results chair would type); the site and what the command printed on stderr."""
    reference = make_reference_file(fake_run, tmp_path)
    folders = [make_submission(fake_run, tmp_path, "alpha", *EXAMPLE["alpha"], cpu="Alpha CPU"),
               make_submission(fake_run, tmp_path, "beta", *EXAMPLE["beta"], cpu=HOSTILE),
               make_submission(fake_run, tmp_path, "tampered", 10.0, 10.0)]
    result = folders[2] / "runs" / "cnn_s0" / "result.json"
    result.write_text(result.read_text().replace('"time_to_target_s": 10.0', '"time_to_target_s": 1.0'))
    monkeypatch.chdir(tmp_path)
    argv = [*(str(f.relative_to(tmp_path)) for f in folders), "--reference", reference.name, "-o", "site"]
    assert main(argv) == 0
    return tmp_path / "site", capsys.readouterr().err


class Tables(HTMLParser):
    """The tables of a page: id -> rows (header row first) of cells {"text", "href", "data-sort"}."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[dict]]] = {}
        self._rows: list | None = None
        self._cell: dict | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._rows = self.tables.setdefault(attrs.get("id", ""), [])
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])
        elif tag in ("td", "th") and self._rows is not None:
            self._cell = {"text": "", "data-sort": attrs.get("data-sort"), "href": None}
            self._rows[-1].append(self._cell)
        elif tag == "a" and self._cell is not None:
            self._cell["href"] = attrs.get("href")

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._cell = None
        elif tag == "table":
            self._rows = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data


def column(rows: list[list[dict]], name: str) -> list[dict]:
    index = [cell["text"] for cell in rows[0]].index(name)
    return [row[index] for row in rows[1:]]


def test_site_ranks_valid_submissions_and_lists_the_invalid_one_apart(fake_run, tmp_path, capsys, monkeypatch):
    site, stderr = build_example_site(fake_run, tmp_path, capsys, monkeypatch)
    index = (site / "index.html").read_text()
    tables = Tables(index).tables
    ranked = tables[page.TABLE_ID]
    assert [c["text"] for c in column(ranked, "submission")] == ["alpha", "beta"]
    assert [c["text"] for c in column(ranked, "#")] == ["1", "2"]
    assert [c["text"] for c in column(ranked, "benchmark score")] == ["1.875", "1.250"]
    assert [c["text"] for c in column(ranked, "CNN score")] == ["1.250", "2.000"]
    assert [c["data-sort"] for c in column(ranked, "transformer score")] == ["2.5", "0.5"]
    assert [c["text"] for c in column(ranked, "CNN time to target (s)")] == ["80.0 (provisional)", "50.0 (provisional)"]
    assert [c["text"] for c in column(ranked, "CNN cost to target")] == ["-", "-"]  # no price, and CPU runs
    assert [c["text"] for c in column(ranked, "division")] == ["closed", "closed"]
    assert column(ranked, "system")[0]["text"].startswith("CPU only, 1 process; CPU Alpha CPU")
    assert column(ranked, "accelerator")[0]["text"] == "none (CPU)"
    # Each name links to its submission's report, which the scorer wrote.
    for cell in column(ranked, "submission"):
        assert cell["href"] == f"submissions/{cell['text']}/report.html"
        report = (site / cell["href"]).read_text()
        assert "VALID" in report and "suite tiny: benchmark score" in report
        assert (site / cell["href"]).with_name("top1_vs_time.png").is_file()

    # The tampered submission: not ranked, its reasons listed apart, on the page and on stderr.
    not_ranked = tables["not-ranked"][1:]
    assert [row[0]["text"] for row in not_ranked] == ["tampered"]
    assert not_ranked[0][0]["href"] == "submissions/tampered/report.html"
    assert "runs/cnn_s0/result.json: checksum mismatch" in not_ranked[0][1]["text"]
    assert "time_to_target_s is 1.0 but the log gives 10.0" in not_ranked[0][1]["text"]
    assert "INVALID" in (site / "submissions" / "tampered" / "report.html").read_text()
    lines = stderr.splitlines()
    assert lines and all(line.startswith("not ranked: ") and "tampered" in line for line in lines)
    assert any("runs/cnn_s0/result.json: checksum mismatch" in line for line in lines)

    # results.csv holds the ranked table.
    with open(site / "results.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    header = rows[0]
    assert header[:4] == ["#", "submission", "suite", "system"] and header[-1] == "report"
    assert [row[header.index("submission")] for row in rows[1:]] == ["alpha", "beta"]
    assert [row[header.index("benchmark score")] for row in rows[1:]] == ["1.875", "1.250"]
    assert [row[header.index("CNN time to target (s)")] for row in rows[1:]] == ["80.0", "50.0"]
    assert [row[header.index("CNN cost to target")] for row in rows[1:]] == ["", ""]
    assert [row[-1] for row in rows[1:]] == ["submissions/alpha/report.html", "submissions/beta/report.html"]

    # Self-contained: nothing is loaded from anywhere, and the only script is the sorter.
    assert "http://" not in index and "https://" not in index and " src=" not in index
    assert index.count("<script") == 1 and f"<script>{page.JS}</script>" in index


def test_submitted_strings_are_escaped(fake_run, tmp_path, capsys, monkeypatch):
    site, _ = build_example_site(fake_run, tmp_path, capsys, monkeypatch)
    index = (site / "index.html").read_text()
    assert "CPU &lt;script&gt;alert(1)&lt;/script&gt; &quot;quotes&quot;" in index
    assert "<script>alert" not in index and '"quotes"' not in index
    system = column(Tables(index).tables[page.TABLE_ID], "system")[1]["text"]
    assert HOSTILE in system  # shown as text
    report = (site / "submissions" / "beta" / "report.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in report and "<script" not in report
    # The Content-Security-Policy allows the page's own stylesheet and script only.
    assert f"script-src {page._hash(page.JS)};" in page.CSP and "default-src 'none'" in page.CSP


def test_csv_cells_that_spreadsheets_read_as_formulas_are_guarded(fake_run, tmp_path, capsys):
    assert [csv_cell(t) for t in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "x=1", ""]] == \
        ["'=1+1", "'+1", "'-1", "'@SUM(A1)", "'\tx", "'\rx", "x=1", ""]
    reference = make_reference_file(fake_run, tmp_path)
    folder = make_submission(fake_run, tmp_path, "@evil", 80.0, 40.0, accelerator='=HYPERLINK("http://x","y")')
    assert main([str(folder), "--reference", str(reference), "-o", str(tmp_path / "site")]) == 0
    with open(tmp_path / "site" / "results.csv", newline="") as handle:
        header, row = list(csv.reader(handle))
    assert row[header.index("submission")] == "'@evil"
    assert row[header.index("accelerator")] == "'=HYPERLINK(\"http://x\",\"y\")"
    assert row[-1] == "submissions/evil/report.html"  # the page's folder name keeps safe characters only


def test_symbolic_links_are_refused_and_never_followed(fake_run, tmp_path, capsys):
    reference = make_reference_file(fake_run, tmp_path)
    good = make_submission(fake_run, tmp_path, "good", 80.0, 40.0)
    linked = make_submission(fake_run, tmp_path, "linked", 50.0, 50.0)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "system.json").write_text(json.dumps({"host_processor_model_name": "OUTSIDE-MARKER"}))
    system = linked / "runs" / "cnn_s0" / "system.json"
    system.unlink()
    system.symlink_to(outside / "system.json")
    (linked / "runs" / "elsewhere").symlink_to(outside, target_is_directory=True)
    # The scorer refuses them too (it names both), but would read through the file link while checking the run.
    assert sum("a symbolic link" in reason for reason in verify_package(linked)) == 2

    assert main([str(good), str(linked), "--reference", str(reference), "-o", str(tmp_path / "site")]) == 0
    stderr = capsys.readouterr().err.splitlines()
    assert stderr == [f"not ranked: {linked}: runs/cnn_s0/system.json: a symbolic link, not followed (a submission "
                      "holds plain files and folders only)",
                      f"not ranked: {linked}: runs/elsewhere: a symbolic link, not followed (a submission holds plain "
                      "files and folders only)"]
    tables = Tables((tmp_path / "site" / "index.html").read_text()).tables
    assert [c["text"] for c in column(tables[page.TABLE_ID], "submission")] == ["good"]
    assert tables["not-ranked"][1][0] == {"text": "linked", "href": None, "data-sort": None}  # never scored
    assert not (tmp_path / "site" / "submissions" / "linked").exists()
    for path in (tmp_path / "site").rglob("*"):
        assert not path.is_file() or b"OUTSIDE-MARKER" not in path.read_bytes()


def test_oversized_unreadable_and_malformed_files_get_one_line_each(fake_run, tmp_path, capsys):
    reference = make_reference_file(fake_run, tmp_path)
    good = make_submission(fake_run, tmp_path, "good", 80.0, 40.0)
    big = make_submission(fake_run, tmp_path, "big", 50.0, 50.0)
    os.truncate(big / "runs" / "cnn_s0" / "run_log.txt", RUN_LOG_CAP + (1 << 20))  # sparse: no disk used
    os.truncate(big / "runs" / "cnn_s0" / "result.json", (1 << 20) + 1)
    fifo = make_submission(fake_run, tmp_path, "fifo", 50.0, 50.0)
    os.mkfifo(fifo / "runs" / "pipe")  # reading it would block forever
    malformed = make_submission(fake_run, tmp_path, "malformed", 50.0, 50.0)
    (malformed / "runs" / "transformer_s0" / "system.json").write_text("{not json")
    write_manifest(malformed)

    folders = [good, big, fifo, malformed]
    assert main([*map(str, folders), "--reference", str(reference), "-o", str(tmp_path / "site")]) == 0
    stderr = capsys.readouterr().err.splitlines()
    assert f"not ranked: {big}: runs/cnn_s0/result.json: 1.0 MiB, over its size cap (64 MiB for a run_log.txt, " \
           "1 MiB for any other file)" in stderr
    assert f"not ranked: {big}: runs/cnn_s0/run_log.txt: 65.0 MiB, over its size cap (64 MiB for a run_log.txt, " \
           "1 MiB for any other file)" in stderr
    assert f"not ranked: {fifo}: runs/pipe: not a plain file (a submission holds plain files and folders only)" \
        in stderr
    assert [line for line in stderr if "system.json" in line] == \
        [f"not ranked: {malformed}/runs/transformer_s0: system.json:1: not valid JSON (Expecting property name "
         "enclosed in double quotes)"]
    assert len(stderr) == 4
    tables = Tables((tmp_path / "site" / "index.html").read_text()).tables
    assert [c["text"] for c in column(tables[page.TABLE_ID], "submission")] == ["good"]
    assert [row[0]["text"] for row in tables["not-ranked"][1:]] == ["big", "fifo", "malformed"]


def test_energy_and_cost_columns(fake_run, tmp_path):
    """Where the runs measured energy and a price was given, the row shows energy (kWh) and cost to target."""
    reference = load_reference(make_reference_file(fake_run, tmp_path))
    folder = make_submission(fake_run, tmp_path, "alpha", 80.0, 40.0)
    assessment = assess_submission(folder, reference, cost_per_hour=9.0)
    assessment.benchmarks["tiny_cnn"].energy_j = 7.2e6  # as a GPU run that recorded energy_j would have it
    assessment.benchmarks["tiny_cnn"].cost = 0.2
    [row] = table.ranked_rows([Submission(folder, "alpha", assessment)], {})
    header = [c.name for c in table.columns(9.0)]
    assert row[header.index("CNN energy to target (kWh)")].text == "2.000"
    assert row[header.index("transformer energy to target (kWh)")].text == "-"
    assert row[header.index("CNN cost to target at 9/h")].text == "0.20"
    assert row[header.index("CNN cost to target at 9/h")].sort == 0.2


def test_usage_errors(fake_run, tmp_path, capsys):
    reference = str(make_reference_file(fake_run, tmp_path))
    folder = make_submission(fake_run, tmp_path, "alpha", 80.0, 40.0)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    cases = {(str(tmp_path / "missing"), "--reference", reference, "-o", str(tmp_path / "a")): "not a submission folder",
             (str(folder), str(folder), "--reference", reference, "-o", str(tmp_path / "b")): "given twice",
             (str(folder), "--reference", reference, "-o", str(tmp_path / "used")): "is not empty",
             (str(folder), "--reference", reference, "-o", str(folder / "site")): "inside the submission",
             (str(folder), "--reference", str(tmp_path / "nope.json"), "-o", str(tmp_path / "c")): "cannot read"}
    for argv, message in cases.items():
        assert main(list(argv)) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as exc:
        main([str(folder), "--reference", reference, "-o", str(tmp_path / "d"), "--cost-per-hour", "0"])
    assert exc.value.code == 2
    assert not (tmp_path / "a").exists() and not (folder / "site").exists()


def test_tool_alias(child_env):
    proc = subprocess.run([sys.executable, "tools/results.py"], cwd=REPO_ROOT, env=child_env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "--reference FILE -o SITE" in proc.stderr
