"""The score's arithmetic on hand-made numbers with known answers."""
from __future__ import annotations

import pytest

from vmb.scoring.score import benchmark_score, device_unit, model_score, summarize_times


def test_olympic_mean_of_five_drops_fastest_and_slowest():
    s = summarize_times([100.0, 90.0, 130.0, 110.0, 120.0])
    assert s.method == "olympic mean" and not s.provisional and s.problem is None
    assert s.t_bench == pytest.approx(110.0)  # mean of 100, 110, 120
    assert (s.min_s, s.max_s, s.n_runs, s.n_failed) == (90.0, 130.0, 5, 0)
    # sample standard deviation of 90..130 step 10 is sqrt(250); the mean is 110
    assert s.cv == pytest.approx(250 ** 0.5 / 110)


def test_olympic_mean_of_seven():
    assert summarize_times([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 100.0]).t_bench == pytest.approx(4.0)


def test_mean_of_three_is_provisional():
    s = summarize_times([10.0, 20.0, 30.0])
    assert s.method == "mean" and s.provisional and s.problem is None
    assert s.t_bench == pytest.approx(20.0)
    assert s.cv == pytest.approx(10.0 / 20.0)


def test_single_run():
    s = summarize_times([42.0])
    assert s.t_bench == 42.0 and s.provisional and s.cv is None


def test_one_failed_run_counts_as_slowest():
    # Olympic: the failed run is the slowest and is dropped with the fastest (90): mean of 100, 110, 120.
    s = summarize_times([100.0, None, 90.0, 120.0, 110.0])
    assert s.problem is None and s.n_failed == 1
    assert s.t_bench == pytest.approx(110.0)
    assert (s.min_s, s.max_s) == (90.0, 120.0)  # the spread is over runs that reached the target
    # Provisional mean: the failed run is left out.
    s = summarize_times([10.0, None, 30.0])
    assert s.problem is None and s.provisional and s.t_bench == pytest.approx(20.0)


def test_two_failed_runs_are_invalid():
    s = summarize_times([100.0, None, 90.0, None, 110.0])
    assert s.t_bench is None and s.problem == "2 of 5 runs missed the target (at most 1 may)"


def test_no_run_reached_the_target():
    assert summarize_times([None]).problem == "no run reached the target"
    assert summarize_times([]).problem == "no runs"


def test_model_score():
    assert model_score(t_ref=100.0, n_ref=4, t_bench=50.0, n_bench=4) == pytest.approx(2.0)
    # Twice as fast with twice the devices is the same per-device speed.
    assert model_score(t_ref=100.0, n_ref=4, t_bench=50.0, n_bench=8) == pytest.approx(1.0)
    assert model_score(t_ref=100.0, n_ref=4, t_bench=200.0, n_bench=1) == pytest.approx(2.0)


@pytest.mark.parametrize("args", [(100.0, 4, 0.0, 4), (100.0, 4, 50.0, 0), (0.0, 4, 50.0, 4), (100.0, 0, 50.0, 4)])
def test_model_score_never_divides_by_zero(args):
    with pytest.raises(ValueError, match="must be positive"):
        model_score(*args)


def test_benchmark_score_needs_both_halves():
    assert benchmark_score({"cnn": 1.5, "transformer": 0.5}) == pytest.approx(1.0)
    assert benchmark_score({"cnn": 1.5}) is None
    assert benchmark_score({"cnn": 1.5, "transformer": None}) is None


def test_device_units():
    assert device_unit("cuda") == "GPUs"
    assert device_unit("cpu") == "CPU processes"
    # CPU runs are scored per process, like GPU runs per GPU.
    assert model_score(t_ref=60.0, n_ref=1, t_bench=40.0, n_bench=2) == pytest.approx(0.75)
