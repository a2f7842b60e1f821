"""The results site, built from submission folders into an output folder that must be new or empty:

    SITE/index.html                        the ranked table and the "Not ranked" table (vmb.scoring.results.page)
    SITE/results.csv                       the ranked table, one row per ranked suite of a submission
    SITE/submissions/<name>/report.html    the scorer's report of each submission it assessed (vmb.scoring.report),
                                           with report.md and the plots

Each submission is checked on its own (vmb.scoring.results.submission): one that is invalid, or that the scorer
cannot assess at all, is listed under "Not ranked" with its reasons and never ranked, and the others are built.
A CSV cell that starts with = + - @, a tab or a carriage return gets a leading apostrophe (OWASP's defence against
formula injection); an empty cell stands for "-".
"""
from __future__ import annotations

import csv
import datetime
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import vmb
from vmb.errors import VMBError, one_line
from vmb.files import write_text_atomic
from vmb.reporting import ReportError
from vmb.scoring.reference import Reference
from vmb.scoring.report import write_report
from vmb.scoring.results import page, table
from vmb.scoring.package import intake_reasons
from vmb.scoring.results.submission import Submission, assess_submission

INDEX, CSV_FILE, SUBMISSIONS_DIR = "index.html", "results.csv", "submissions"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ResultsError(VMBError):
    """The site cannot be built: a submission path that is not a folder, or an output folder in use or inside a
    submission."""


@dataclass(frozen=True)
class Site:
    """What was built."""

    index: Path
    submissions: list[Submission]
    n_ranked: int  # rows of the ranked table
    not_ranked: list[table.NotRanked]


def csv_cell(text: str) -> str:
    """`text`, with a leading apostrophe when a spreadsheet would read it as a formula."""
    return "'" + text if text.startswith(FORMULA_START) else text


def _slug(name: str, taken: set[str]) -> str:
    """A folder name for the submission's page: safe characters only, unique among `taken` (which it joins)."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")[:80] or "submission"
    slug, n = base, 1
    while slug in taken:
        n += 1
        slug = f"{base}-{n}"
    taken.add(slug)
    return slug


def _check_paths(folders: Sequence[Path], out_dir: Path) -> None:
    seen: dict[Path, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            raise ResultsError(f"{folder}: not a submission folder (no such folder; unpack a tarball with tar xzf "
                               "first)")
        real = folder.resolve()
        if real in seen:
            raise ResultsError(f"{folder}: given twice (also as {seen[real]}); give each submission once")
        seen[real] = folder
        if out_dir.resolve().is_relative_to(real):
            raise ResultsError(f"{out_dir} is inside the submission {folder}; choose an -o DIR outside it")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ResultsError(f"{out_dir} already exists and is not empty; choose another -o DIR or remove it")


def _read(folder: Path, slug: str, reference: Reference, cost_per_hour: float | None,
          out_dir: Path) -> tuple[Submission, str | None]:
    """The submission, and the URL of its report page (None when it was not assessed)."""
    intake = intake_reasons(folder)
    if intake:
        return Submission(folder, slug, None, tuple(intake)), None
    try:
        submission = Submission(folder, slug, assess_submission(folder, reference, cost_per_hour))
        written = write_report(submission.assessment, out_dir / SUBMISSIONS_DIR / slug)
    except ReportError:
        raise
    except Exception as exc:  # a submission the scorer did not foresee: one line for it, and the others are built
        reason = f"{folder}: cannot be scored ({type(exc).__name__}: {one_line(exc)})"
        return Submission(folder, slug, None, (reason,)), None
    return submission, next(p for p in written if p.suffix == ".html").relative_to(out_dir).as_posix()


def _csv(columns: Sequence[table.Column], rows: Sequence[Sequence[table.Cell]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([csv_cell(c.name) for c in columns] + ["report"])
    for row in rows:
        cells = ["" if cell.text == table.NONE else cell.text for cell in row]
        writer.writerow([csv_cell(text) for text in cells] + [csv_cell(next((c.link for c in row if c.link), ""))])
    return buffer.getvalue()


def build_site(folders: Sequence[Path], reference: Reference, out_dir: Path,
               cost_per_hour: float | None = None) -> Site:
    """Check and score every submission folder against `reference`, and write the site into `out_dir`.

    Raises:
        ResultsError: a path that is not a folder, a folder given twice, or an `out_dir` that is not empty or
            lies inside a submission folder.
        ReportError: `out_dir` cannot be written.
    """
    folders = [Path(f) for f in folders]
    _check_paths(folders, out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create {out_dir} ({exc.strerror or exc})") from None
    taken: set[str] = set()
    submissions, links = [], {}
    for folder in folders:
        submission, link = _read(folder, _slug(folder.name, taken), reference, cost_per_hour, out_dir)
        submissions.append(submission)
        if link:
            links[submission.slug] = link
    columns = table.columns(cost_per_hour)
    rows = table.ranked_rows(submissions, links)
    entries = table.not_ranked(submissions, links)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    intro = (f"{len(rows)} ranked result(s) from {len(folders)} submission folder(s), checked and scored against the "
             f"reference {reference.path} by vmb {vmb.__version__} on {now} UTC. Per benchmark, score = t_ref / t_bench "
             "x (n_ref / n_bench); the benchmark score, which ranks, is the mean of the CNN and the transformer score. "
             "Compare scores within a division. Each submission's name links to its report.")
    index = out_dir / INDEX
    try:
        write_text_atomic(index, page.index_html(columns, rows, entries, intro, CSV_FILE))
        write_text_atomic(out_dir / CSV_FILE, _csv(columns, rows))
    except OSError as exc:
        raise ReportError(f"cannot write the site to {out_dir} ({exc.strerror or exc})") from None
    return Site(index, submissions, len(rows), entries)
