"""The convergence check, after MLPerf's reference convergence points (RCPs): does a submission reach the
target in significantly fewer epochs than the reference runs did? A recipe tuned to converge faster (or a
lucky set of runs) would otherwise be scored as faster hardware.

Pure functions over epochs to target (result.json `epochs` of the runs that reached the target; a reference
records them as `epochs_to_target`). The statistics, as MLPerf's rcp_checker computes them:

- reference mean: the mean of its epochs without the smallest and the largest when there are at least
  OLYMPIC_MIN_RUNS (5), else of all; n_ref = the number of epochs averaged;
- reference std: the population standard deviation (ddof 0, numpy's default, as rcp_checker uses) of all
  its epochs, untrimmed;
- submission mean and n_sub: the same trimmed mean over the submission's runs that reached the target;
- the test: Student's two-sample t-test with equal variances, both samples given the reference's std
  (scipy.stats.ttest_ind_from_stats(sub_mean, std, n_sub, ref_mean, std, n_ref, equal_var=True,
  alternative="less")), so t = (sub_mean - ref_mean) / (std * sqrt(1/n_sub + 1/n_ref)) with
  n_sub + n_ref - 2 degrees of freedom; the check fails when the one-sided p-value is below the version's p_value (release.yaml; MLPerf's
  rcp_checker alpha, 0.05, in version 1.0);
- a reference std of 0 fails any submission mean below the reference mean;
- a reference with fewer than the version's min_reference_runs epochs has no spread to test against: not
  checked.

MLPerf instead searches for the smallest mean the test accepts, normalises a submission between it and the
reference mean, and rejects one below it; VMB normalises exactly the submissions that fail the test
(closed division: the time scaled by reference mean / submission mean) and reports them in the open one.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Sequence

from vmb.scoring.score import OLYMPIC_MIN_RUNS



def trimmed(epochs: Sequence[float]) -> list[float]:
    """The epochs sorted, without the smallest and the largest when there are at least OLYMPIC_MIN_RUNS."""
    ordered = sorted(epochs)
    return ordered[1:-1] if len(ordered) >= OLYMPIC_MIN_RUNS else ordered


@dataclass(frozen=True)
class Convergence:
    """The submission's epochs to target against the reference's."""

    reference_mean: float
    reference_std: float
    n_reference: int  # reference epochs averaged (after trimming)
    n_reference_runs: int  # all reference epochs (the std's)
    submission_mean: float
    n_submission: int  # submission epochs averaged (after trimming)
    p_value: float | None  # one-sided; None when the reference std is 0
    p_threshold: float  # the version's level: below it, the submission is significantly faster

    @property
    def faster(self) -> bool:
        """The submission converges significantly faster than the reference: the check fails."""
        if self.p_value is None:
            return self.submission_mean < self.reference_mean
        return self.p_value < self.p_threshold

    @property
    def factor(self) -> float:
        """reference mean / submission mean: what the closed division multiplies a failing time by."""
        return self.reference_mean / self.submission_mean

    def describe(self) -> str:
        """One line with the statistics and the verdict."""
        test = (f"one-sided p {self.p_value:.3g} {'<' if self.faster else '>='} {self.p_threshold}"
                if self.p_value is not None else "the reference's epochs do not vary")
        verdict = "significantly fewer epochs than the reference" if self.faster else "passed"
        return (f"mean {self.submission_mean:.4g} epochs to target over {self.n_submission} run(s) vs the "
                f"reference's {self.reference_mean:.4g} (mean of {self.n_reference}, std {self.reference_std:.3g} "
                f"over {self.n_reference_runs}): {test}: {verdict}")


def not_checked(reference_epochs: Sequence[float] | None, min_reference_runs: int) -> str | None:
    """Why the reference's epochs cannot be tested against (one line), or None when they can."""
    if reference_epochs is None:
        return "the reference has no epochs_to_target; convergence not checked"
    if len(reference_epochs) < max(2, min_reference_runs):  # a standard deviation needs two values
        return (f"the reference has {len(reference_epochs)} run(s) with epochs_to_target (at least "
                f"{max(2, min_reference_runs)} needed for a spread); convergence not checked")
    return None


def check_convergence(reference_epochs: Sequence[float], epochs: Sequence[float], p_threshold: float,
                      min_reference_runs: int) -> Convergence:
    """Test the submission's `epochs` (runs that reached the target) against the reference's, at the one-sided
    level `p_threshold` (a version's release.yaml gives both parameters).

    Raises:
        ValueError: `not_checked(reference_epochs, min_reference_runs)` is not None, or `epochs` is empty or
            not positive.
    """
    from scipy import stats  # here, not at the top: it takes most of a second, and only a reference needs it

    if not_checked(reference_epochs, min_reference_runs) is not None or not epochs or min(epochs) <= 0:
        raise ValueError(f"cannot test epochs {list(epochs)} against the reference's {reference_epochs}")
    reference, submission = trimmed(reference_epochs), trimmed(epochs)
    ref_mean, sub_mean = statistics.fmean(reference), statistics.fmean(submission)
    std = statistics.pstdev(reference_epochs)
    p_value = None
    if std > 0:
        p_value = float(stats.ttest_ind_from_stats(sub_mean, std, len(submission), ref_mean, std, len(reference),
                                                   equal_var=True, alternative="less").pvalue)
    return Convergence(ref_mean, std, len(reference), len(reference_epochs), sub_mean, len(submission), p_value,
                       p_threshold)
