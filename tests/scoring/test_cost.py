"""Cost and energy to target: DAWNBench's time x price, the mean energy of the runs that reached the target,
and "not measured" (never 0) where there is nothing to measure."""
from __future__ import annotations

import json

import pytest

from vmb.scoring import report
from vmb.scoring.assess import assess
from vmb.scoring.cost import NOT_MEASURED_CPU, cost_to_target, energy_to_target


def test_cost_is_hours_times_price():
    assert cost_to_target(5400.0, 32.0, "GPUs") == (pytest.approx(48.0), None)  # 1.5 h at 32 per hour


@pytest.mark.parametrize("t, price, unit, why", [
    (5400.0, None, "GPUs", "no --cost-per-hour given"),
    (5400.0, 32.0, "CPU processes", NOT_MEASURED_CPU),
    (None, 32.0, "GPUs", "no time to target"),
])
def test_no_cost_says_why(t, price, unit, why):
    assert cost_to_target(t, price, unit) == (None, why)


def run(status: str = "success", total: float | None = 1000.0, note: str | None = None) -> dict:
    return {"status": status, "energy_j": None if total is None else {"per_device": [total], "total": total},
            "energy_note": note}


def test_energy_is_the_mean_over_the_runs_that_reached_the_target():
    runs = [run(total=1000.0), run(total=3000.0), run("aborted", total=9000.0)]
    assert energy_to_target(runs) == (pytest.approx(2000.0), None)


def test_energy_not_measured_gives_the_runs_reason():
    runs = [run(total=1000.0), run(total=None, note="not measured: CPU run (NVML reads GPUs only)")]
    assert energy_to_target(runs) == (None, "not measured: CPU run (NVML reads GPUs only)")
    assert energy_to_target([{"status": "success"}]) == (None, "not measured: the run records no energy")
    assert energy_to_target([run("aborted")]) == (None, "no run reached the target")


def with_energy(run_dir, joules: float | None, note: str | None = None):
    """The run's result.json as a GPU run's would record its energy (fields the scorer reports, not checks)."""
    result = json.loads((run_dir / "result.json").read_text())
    result["energy_j"] = None if joules is None else {"per_device": [joules], "total": joules}
    result["energy_note"] = note
    (run_dir / "result.json").write_text(json.dumps(result))
    return run_dir


def test_table_and_json_show_cost_and_energy(fake_run, tiny_benchmarks):
    runs = [with_energy(fake_run(f"r{seed}", 100 + seed, seed), 3.6e6 * (1 + seed)) for seed in range(3)]
    a = assess(runs, cost_per_hour=10.0)
    assert a.valid
    text = report.format_text(a)
    assert "cost to target (10/h)" in text and "energy to target" in text
    assert "not measured: CPU run" in text  # the price is a GPU system's: a CPU run has no cost
    assert "2.000 kWh" in text  # the mean of 1, 2 and 3 kWh
    data = report.to_json(a)
    assert data["cost_per_hour"] == 10.0
    assert data["benchmarks"]["tiny_cnn"]["energy_j"] == pytest.approx(7.2e6)
    assert data["benchmarks"]["tiny_cnn"]["cost"] is None


def test_without_price_or_energy_the_table_is_unchanged(fake_run, tiny_benchmarks):
    a = assess([with_energy(fake_run("r0", 100, 0), None, "not measured: CPU run (NVML reads GPUs only)")])
    assert "energy to target" not in report.format_text(a)
    assert report.to_json(a)["benchmarks"]["tiny_cnn"]["energy_note"].startswith("not measured: CPU run")
