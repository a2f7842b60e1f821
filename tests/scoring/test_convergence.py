"""The convergence check's statistics on hand-made epochs, against values computed here from the formulas
(Student's t with equal variances, its CDF integrated numerically), not through scipy's t-test."""
from __future__ import annotations

import math

import pytest

from vmb.scoring.convergence import check_convergence as _check_convergence
from vmb.scoring.convergence import not_checked as _not_checked
from vmb.scoring.convergence import trimmed
from vmb.scoring.release import load_release

RELEASE = load_release("1.0")  # MLPerf's alpha 0.05, at least 2 reference runs
P_VALUE = RELEASE.p_value


def check_convergence(reference, epochs):
    return _check_convergence(reference, epochs, RELEASE.p_value, RELEASE.min_reference_runs)


def not_checked(reference):
    return _not_checked(reference, RELEASE.min_reference_runs)



def t_cdf(t: float, df: int) -> float:
    """Student's t CDF at t <= 0: 1/2 minus the density integrated from t to 0 (Simpson's rule)."""
    scale = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    density = lambda x: scale * (1 + x * x / df) ** (-(df + 1) / 2)  # noqa: E731
    steps, h = 4000, -t / 4000
    total = density(t) + density(0.0) + sum((4 if i % 2 else 2) * density(t + i * h) for i in range(1, steps))
    return 0.5 - total * h / 3


def one_sided_p(sub_mean: float, n_sub: int, ref_mean: float, n_ref: int, std: float) -> float:
    t = (sub_mean - ref_mean) / (std * math.sqrt(1 / n_sub + 1 / n_ref))
    return t_cdf(t, n_sub + n_ref - 2)


def test_the_numerical_cdf_matches_the_closed_form_for_two_degrees_of_freedom():
    for t in (-0.3, -1.0, -2.5, -6.0):
        assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-9)


def test_trimming_drops_min_and_max_from_five_runs_up():
    assert trimmed([3.0, 1.0, 2.0, 4.0]) == [1.0, 2.0, 3.0, 4.0]
    assert trimmed([5.0, 1.0, 3.0, 2.0, 4.0]) == [2.0, 3.0, 4.0]


REFERENCE = [8.0, 10.0, 10.0, 10.0, 12.0]  # trimmed mean 10 over 3; population std sqrt(1.6) over all 5


def test_reference_statistics():
    c = check_convergence(REFERENCE, [10.0])
    assert (c.reference_mean, c.n_reference, c.n_reference_runs) == (10.0, 3, 5)
    assert c.reference_std == pytest.approx(math.sqrt(1.6))  # ddof 0, untrimmed, as MLPerf's np.std


@pytest.mark.parametrize("epochs, faster", [
    ([6.0], False),  # t = -2.74 with 2 degrees of freedom: p = 0.056, just above 0.05
    ([5.0], True),  # t = -3.42: p = 0.038
    ([7.0, 9.0, 8.0], False),  # mean 8 over 3 runs: t = -1.94, 4 dof: p = 0.062
    ([7.5, 7.5, 7.0], True),  # mean 7.33: t = -2.58, p = 0.031
    ([1.0, 7.0, 7.0, 7.0, 30.0], True),  # trimmed to 7, 7, 7: t = -2.90, p = 0.022
    ([11.0], False),  # slower than the reference
])
def test_one_sided_t_test_against_the_formula(epochs, faster):
    c = check_convergence(REFERENCE, epochs)
    kept = trimmed(epochs)
    expected = one_sided_p(sum(kept) / len(kept), len(kept), 10.0, 3, math.sqrt(1.6))
    assert c.n_submission == len(kept) and c.submission_mean == pytest.approx(sum(kept) / len(kept))
    assert c.p_value == pytest.approx(expected, rel=1e-6)
    assert c.faster is faster and (c.p_value < P_VALUE) is faster
    assert c.factor == pytest.approx(10.0 / c.submission_mean)


def test_known_value_of_the_failing_case():
    c = check_convergence(REFERENCE, [5.0])
    t = -5 / (math.sqrt(1.6) * math.sqrt(4 / 3))
    assert c.p_value == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)))  # about 0.0379
    assert c.factor == 2.0
    assert "one-sided p 0.0379 < 0.05: significantly fewer epochs than the reference" in c.describe()


def test_zero_variance_fails_any_mean_below_the_reference():
    for epochs, faster in (([9.5], True), ([10.0], False), ([12.0, 11.0], False), ([10.0, 9.0], True)):
        c = check_convergence([10.0, 10.0, 10.0], epochs)
        assert c.p_value is None and c.reference_std == 0 and c.faster is faster
    assert "the reference's epochs do not vary" in check_convergence([10.0, 10.0], [9.0]).describe()


def test_references_that_cannot_be_tested():
    assert not_checked(None) == "the reference has no epochs_to_target; convergence not checked"
    assert not_checked([10.0]) == ("the reference has 1 run(s) with epochs_to_target (at least 2 needed for a "
                                   "spread); convergence not checked")
    assert not_checked([10.0, 11.0]) is None
    with pytest.raises(ValueError):
        check_convergence([10.0], [5.0])
    with pytest.raises(ValueError):
        check_convergence(REFERENCE, [])
