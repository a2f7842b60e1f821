"""One submission folder on the results page, and the scorer's verdict on it.

A submission folder is a package (vmb.scoring.package: README.md, MANIFEST.sha256, runs/<run>/...); what it may
hold is checked before any file of it is read (vmb.scoring.package.intake_reasons, which the scorer applies too).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vmb.scoring import assess, package
from vmb.scoring.assess import Assessment, SuiteResult
from vmb.scoring.reference import Reference

def assess_submission(folder: Path, reference: Reference, cost_per_hour: float | None) -> Assessment:
    """The scorer's verdict on a submission folder that passed `intake_reasons`: its manifest verified, its runs
    checked and scored against `reference`. This is the one call into the scorer."""
    run_dirs, set_reasons = package.collect_runs([folder])
    return assess.assess(run_dirs, reference, set_reasons, cost_per_hour)


@dataclass(frozen=True)
class Submission:
    """One submission folder as the site shows it."""

    folder: Path
    slug: str  # the folder of its page under the site's submissions/ (safe characters only, unique in the site)
    assessment: Assessment | None  # None when it was not scored (`reasons` says why)
    intake: tuple[str, ...] = ()  # intake_reasons, or the one line of an error the scorer raised on it

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def reasons(self) -> list[str]:
        """Why it is invalid: the intake's reasons, or the scorer's."""
        return list(self.intake) if self.assessment is None else self.assessment.all_reasons()

    def ranked_suites(self) -> list[SuiteResult]:
        """The suites that rank it: those with a benchmark score, in a valid submission."""
        if self.assessment is None or not self.assessment.valid:
            return []
        return [s for s in self.assessment.suites.values() if s.benchmark_score is not None]

    def not_ranked(self) -> list[str]:
        """Why it, or one of its suites, is not ranked (empty when every suite it holds is ranked)."""
        if self.assessment is None or not self.assessment.valid:
            return self.reasons
        return [f"{self.folder}: suite {s.suite}: no benchmark score: {s.note}" for s in self.assessment.suites.values()
                if s.benchmark_score is None]
