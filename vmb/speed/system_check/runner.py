"""Running the check (`run_check`): the environment cell, then the plan's cells one after the other within the
budget (`Runner`), the files rewritten after each, a row per cell printed, the exit status.

Budget: each cell's timeout is its weighted share of the time left, keeping the grace period in hand (a cell may
use up to SHARE_STRETCH times its share; a cell that finishes early leaves its time to the later ones); a cell gets
"not run: budget spent" when less than its minimum is left. Ctrl-C records the cell and every later one that could
have run "not run: interrupted (Ctrl-C)" and ends with exit status 130.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

from vmb.speed.system_check.cells import CellContext, CellSpec, cell_environment, plan_cells
from vmb.speed.system_check.environment import probe_environment
from vmb.speed.system_check.plan import G_ENV, make_plan
from vmb.speed.system_check.process import TAIL_LINES, CellFailed, CellTimeout, Finished, NotRun, run_command
from vmb.speed.system_check.report import JSON_NAME, MARKDOWN_NAME, Report
from vmb.speed.system_check.summaries import ROW_HEADER, bench_summary, env_summary, row

BUDGET_SPENT = "budget spent"
INTERRUPTED = "interrupted (Ctrl-C)"

# Budget: how far a cell may go past its share of the time left, and the grace between SIGINT and SIGKILL.
SHARE_STRETCH = 1.5  # a cell may take up to this many times its share of the time left
GRACE_MAX_S = 10.0
GRACE_SHARE = 0.1  # of the budget, at most GRACE_MAX_S


class Runner:
    """Runs cells one after the other within the budget (module docstring), records each (`Report.cells`, rewritten
    to disk after each), prints a row per cell with `log`, and keeps going after any failure. Ctrl-C (a
    KeyboardInterrupt) inside a cell or between cells sets `interrupted`: the cell and every later one that could
    have run are recorded "not run: interrupted (Ctrl-C)"."""

    def __init__(self, report: Report, ctx: CellContext, deadline: float, grace_s: float,
                 log: Callable[[str], None] = print) -> None:
        self.report, self.ctx, self.deadline, self.grace_s, self.log = report, ctx, deadline, grace_s, log
        self.interrupted = False

    def run(self, specs: Sequence[CellSpec]) -> None:
        """Run or record every cell of `specs`, in order."""
        for index, spec in enumerate(specs):
            try:
                if spec.not_run:
                    self._record(spec, f"not run: {spec.not_run}", 0.0)
                elif self.interrupted:
                    self._record(spec, f"not run: {INTERRUPTED}", 0.0)
                else:
                    self._budgeted(spec, specs[index:])
            except KeyboardInterrupt:
                self.interrupted = True
                if not any(c["id"] == spec.id for c in self.report.cells):
                    self._record(spec, f"not run: {INTERRUPTED}", 0.0)

    def timeout(self, spec: CellSpec, remaining: Sequence[CellSpec]) -> float | None:
        """The cell's timeout: its weighted share of the time left (keeping the grace period in hand), stretched
        by SHARE_STRETCH, at least its min_s; None when less than min_s is left."""
        left = self.deadline - time.monotonic() - self.grace_s
        if left < spec.min_s:
            return None
        weights = sum(s.weight for s in remaining if s.not_run is None)
        share = left * spec.weight / weights if weights else left
        return min(left, max(spec.min_s, SHARE_STRETCH * share))

    def _budgeted(self, spec: CellSpec, remaining: Sequence[CellSpec]) -> None:
        timeout = self.timeout(spec, remaining)
        if timeout is None:
            self._record(spec, f"not run: {BUDGET_SPENT}", 0.0)
            return
        self.ctx.cell_id, self.ctx.timeout_s, self.ctx.grace_s = spec.id, timeout, self.grace_s
        self.log(f"  ... {spec.name} (up to {timeout:.0f} s)")
        began = time.monotonic()
        figures, error = {}, None
        try:
            figures, status = spec.fn(self.ctx) or {}, "ok"
        except KeyboardInterrupt:
            self.interrupted, status = True, f"not run: {INTERRUPTED}"
        except NotRun as exc:
            status = f"not run: {exc}"
        except CellFailed as exc:
            status = "timeout" if isinstance(exc, CellTimeout) else "failed"
            figures, error = exc.figures, [str(exc), *exc.tail]
        except Exception as exc:  # a bug or an unexpected environment: this cell fails, the others go on
            lines = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).splitlines()
            status, error = "failed", [f"{type(exc).__name__}: {exc}", *lines[-TAIL_LINES:]]
        self._record(spec, status, time.monotonic() - began, figures, error)

    def _record(self, spec: CellSpec, status: str, seconds: float, figures: dict | None = None,
                error: list[str] | None = None) -> None:
        figures = {**spec.info, **(figures or {})}
        measured = status == "ok" or figures.keys() - spec.info.keys()
        try:
            summary = (spec.summary or bench_summary)(figures) if measured else ""
        except (KeyError, TypeError, ValueError):  # figures a failed tool left incomplete
            summary = ""
        record = {"id": spec.id, "name": spec.name, "group": spec.group, "status": status,
                  "seconds": round(seconds, 1), "summary": summary, "figures": figures, "error": error}
        self.report.cells.append(record)
        self.ctx.records[spec.id] = record
        self.report.write()
        self.log(row(record))


def run_check(out: Path, budget_min: float, log: Callable[[str], None] = print,
              execute: Callable[[Sequence[str], float, Path, float], Finished] = run_command,
              probe: Callable[[], dict] = probe_environment) -> int:
    """Run every cell into `out` within `budget_min` minutes. Exit status: 0 when every cell that ran is ok, 1 when
    one failed or timed out, 130 on Ctrl-C (the outputs are written in every case)."""
    budget_s = budget_min * 60
    report = Report(out, budget_min)
    ctx = CellContext(out=out, env=report.environment, execute=execute)
    runner = Runner(report, ctx, report.began + budget_s, min(GRACE_MAX_S, GRACE_SHARE * budget_s), log)
    log(f"VMB system check into {out}, budget {budget_min:g} min")
    log(ROW_HEADER)
    runner.run([CellSpec("environment", "environment", G_ENV, partial(cell_environment, probe=probe), weight=0,
                         summary=env_summary)])
    try:
        if not runner.interrupted:
            ctx.plan = make_plan(budget_s, report.environment.get("usable_cores") or 1,
                                 report.environment.get("cuda_devices") or 0)
            report.plan = asdict(ctx.plan)
            runner.run(plan_cells(report.environment, ctx.plan))
    except KeyboardInterrupt:
        runner.interrupted = True
    report.interrupted, report.complete = runner.interrupted, not runner.interrupted
    report.write()
    document = report.document()
    log(f"sizing: {document['sizing']['line']}")
    log(f"written: {out / JSON_NAME}, {out / MARKDOWN_NAME} ({document['elapsed_s']:.0f} s)")
    if runner.interrupted:
        return 130
    return 1 if any(c["status"] in ("failed", "timeout") for c in report.cells) else 0
