"""Run mlperf_logging's compliance checker on a run log with VMB's own rules: the compliance.yaml of the run's
benchmark version (vmb/scoring/rules/<version>/, vmb.scoring.release).

The checker evaluates the Python expressions of its rule files, so only the packaged rule files are ever
used, never files from a submission. It is called in-process (its parser and per-file checks), which
gives its messages one by one; each becomes a one-line reason naming the log line.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from mlperf_logging.compliance_checker import mlp_compliance, mlp_parser

PARSER_RULESET = "6.1.0"  # selects the checker's log-line parser; all recent ones read the same :::MLLOG lines
_TOKEN = ":::MLLOG "

_FAILED_CHECK = re.compile(r"CHECK for '(?P<key>[^']*)' failed in line (?P<index>\d+):")


def _mllog_lines(path: Path) -> list[tuple[int, str]]:
    """(file line number, stripped text) of the lines the checker parses; it numbers them 0, 1, ..."""
    with open(path, encoding="latin-1") as handle:
        return [(number, line.strip()) for number, line in enumerate(handle, start=1) if _TOKEN in line]


def _reason(check: str) -> str:
    """The comment after a rule's expression, or the expression itself."""
    expression, _, comment = check.partition("#")
    return comment.strip() or f"check `{expression.strip()}` failed"


def _one_line(message: str, name: str, mllog_lines: list[tuple[int, str]]) -> str:
    """One reason from one (multi-line) checker message."""
    lines = message.strip().splitlines()
    failed = next((line[len("failed test: "):] for line in lines if line.startswith("failed test: ")), None)
    logged = next((line.strip() for line in lines if line.startswith(_TOKEN)), None)
    where = name
    if logged is not None:
        where = next((f"{name}:{number}" for number, text in mllog_lines if text == logged), name)
    key = _key_of(logged) if logged is not None else "?"
    match = _FAILED_CHECK.match(lines[0])
    if match and failed is not None:
        index = int(match["index"])  # the checker's own count is exact where equal lines repeat
        where = f"{name}:{mllog_lines[index][0]}" if index < len(mllog_lines) else where
        return f"{where}: {match['key']}: {_reason(failed)}"
    if failed is not None:  # a check of the END block
        return f"{name}: {_reason(failed)}"
    if lines[0].startswith("Failed executing CHECK code") and len(lines) > 1:  # the check raised
        return f"{where}: {key}: {_reason(lines[1])} (a value has the wrong type)"
    if lines[0].startswith("Failed executing"):  # a rule's POST code raised
        return f"{where}: {key}: a value has the wrong type"
    return f"{name}: {lines[0]}"


def _key_of(log_line: str) -> str:
    try:
        return str(json.loads(log_line[len(_TOKEN):])["key"])
    except (ValueError, KeyError, TypeError):
        return "?"


def check_log(path: Path, rules: Path) -> list[str]:
    """Reasons why the run log at `path` fails the packaged compliance rules file `rules` (empty when it passes)."""
    name = path.name
    try:
        loglines, errors = mlp_parser.parse_file(str(path), ruleset=PARSER_RULESET)
        mllog_lines = _mllog_lines(path)
    except (OSError, KeyError, TypeError, ValueError) as exc:
        return [f"{name}: the compliance checker cannot parse it ({type(exc).__name__}: {exc})"]
    if errors:
        line, error = errors[0]
        return [f"{name}: the compliance checker cannot parse a line ({error}): {line[:80]}"]
    if not loglines:
        return [f"{name}: no :::MLLOG lines"]
    checker = mlp_compliance.make_checker("training", PARSER_RULESET, quiet=False, werror=True)
    try:
        checker.configured_checks(loglines, str(rules))
    except Exception as exc:  # the checker has no error contract: anything it raises is a failed check
        return [f"{name}: the compliance checker failed with {rules.name} ({type(exc).__name__}: {exc})"]
    messages = [*checker.warnings.values(), *checker.overwritable.values(), *checker.not_overwritable]
    return [_one_line(m, name, mllog_lines) for m in messages]
