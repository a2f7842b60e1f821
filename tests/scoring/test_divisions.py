"""Closed and open divisions, code provenance, logged hyperparameters, the convergence check against the
reference's epochs, and duplicated runs: each passing and failing on hand-made runs."""
from __future__ import annotations

import json
import math
import pathlib
import shutil

import pytest

from vmb.record.provenance import code_provenance
from vmb.scoring import report
from vmb.scoring.assess import CLOSED_ONLY, assess, check_path, make_reference
from vmb.scoring.reference import ReferenceFileError, load_reference, write_reference

pytestmark = pytest.mark.usefixtures("tiny_benchmarks")

OTHER_CODE = "sha256:" + "00" * 32
CHANGED_LR = "config.yaml changes fixed keys (SOLVER.BASE_LR: 0.1 -> 0.2)"


def edit_json(path: pathlib.Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def edit_log(run: pathlib.Path, key: str, edit) -> None:
    """Apply `edit(record)` to the first MLLOG line of `key` (a falsy return deletes it; a list repeats it)."""
    lines = (run / "run_log.txt").read_text().splitlines()
    i = next(i for i, line in enumerate(lines) if f'"key": "{key}"' in line)
    record = json.loads(lines[i].removeprefix(":::MLLOG "))
    edited = edit(record)
    lines[i:i + 1] = [f":::MLLOG {json.dumps(r)}" for r in (edited if isinstance(edited, list) else [edited] if edited
                                                             else [])]
    (run / "run_log.txt").write_text("\n".join(lines) + "\n")


def set_value(value):
    return lambda record: {**record, "value": value}


def reasons(run: pathlib.Path) -> list[str]:
    return check_path(run).reasons


@pytest.fixture
def reference(fake_run, tmp_path):
    """A reference from five closed runs of tiny_cnn, 100 s each, that reached the target at epochs 2, 2, 2.5,
    2.5 and 3: mean 7/3 (trimmed), population std sqrt(0.14)."""
    runs = [fake_run(f"ref{seed}", 100, seed, n_evals=n) for seed, n in enumerate([4, 4, 5, 5, 6])]
    path = tmp_path / "ref.json"
    write_reference(make_reference(assess(runs), "test"), path)
    return load_reference(path)


# ---------------------------------------------------------------------------------------------- provenance

def test_runs_carry_their_code_provenance_and_division(fake_run):
    run = fake_run("a", 10, 0)
    result, system = (json.loads((run / name).read_text()) for name in ("result.json", "system.json"))
    for key, value in code_provenance().items():
        assert result[key] == system[key] == value
    assert result["division"] == "closed" and result["epochs"] == 2.0
    assert reasons(run) == []


def test_source_digest_must_be_the_logs_and_system_jsons(fake_run):
    run = fake_run("a", 10, 0)
    digest = code_provenance()["source_digest"]
    edit_json(run / "result.json", source_digest=OTHER_CODE)
    assert sorted(reasons(run)) == [
        f"result.json: source_digest is {OTHER_CODE!r} but the log's vmb_source_digest is {digest!r}",
        f"system.json: source_digest is {digest!r} but result.json says {OTHER_CODE!r}"]


def test_provenance_fields_are_required_and_git_may_be_unknown(fake_run):
    run = fake_run("a", 10, 0)
    for name in ("result.json", "system.json"):
        edit_json(run / name, git_commit=None, git_dirty=None)
    assert reasons(run) == []  # not a git checkout
    edit_json(run / "result.json", git_dirty="yes")
    assert reasons(run) == ["result.json: field git_dirty must be true, false or null, got 'yes'"]
    data = json.loads((run / "result.json").read_text())
    del data["source_digest"]
    (run / "result.json").write_text(json.dumps(data))
    assert reasons(run) == ["result.json: field source_digest is missing"]


def test_config_digest_must_be_logged_and_be_config_yamls(fake_run):
    run = fake_run("a", 10, 0)
    edit_log(run, "vmb_config_digest", set_value("0" * 64))
    assert reasons(run) == ["run_log.txt: vmb_config_digest is not the digest of config.yaml (changed after the run?)"]
    edit_log(run, "vmb_config_digest", lambda record: None)
    assert reasons(run) == ["run_log.txt: vmb_config_digest is logged 0 times (exactly once)"]


def test_epochs_must_be_the_evaluation_that_reached_the_target(fake_run):
    run = fake_run("a", 10, 0, n_evals=5)
    assert json.loads((run / "result.json").read_text())["epochs"] == 2.5 and reasons(run) == []
    edit_json(run / "result.json", epochs=1.0)
    assert reasons(run) == ["result.json: epochs is 1.0 but the last eval_accuracy's epoch_num is 2.5"]


# ---------------------------------------------------------------------------------------------- hyperparameters

@pytest.mark.parametrize("key, edit, expected", [
    ("opt_base_learning_rate", set_value(0.2),
     ["run_log.txt: opt_base_learning_rate is 0.2 but config.yaml's SOLVER.BASE_LR is 0.1"]),
    ("opt_name", set_value("adamw"), ["run_log.txt: opt_name is 'adamw' but config.yaml's SOLVER.OPTIMIZING_METHOD "
                                      "is 'sgd'"]),
    ("opt_momentum", lambda record: None,
     ["run_log.txt: opt_momentum is logged 0 times (exactly once, config.yaml's SOLVER.MOMENTUM)"]),
    ("opt_max_epoch", lambda record: [record, record],
     ["run_log.txt: opt_max_epoch is logged 2 times (exactly once, config.yaml's SOLVER.MAX_EPOCH)"]),
    ("submission_division", set_value("open"),
     ["result.json: division is 'closed' but the log says 'open'",
      "run_log.txt: submission_division is 'open' but config.yaml's BENCHMARK.DIVISION is 'closed'"]),
    ("seed", set_value(True), ["result.json: seed is 1 but the log says True",  # JSON's true is not 1
                               "run_log.txt: seed is True but config.yaml's RNG_SEED is 1",
                               "run_log.txt:6: seed: the seed is not an integer"]),
])
def test_logged_hyperparameters_must_be_config_yamls(fake_run, key, edit, expected):
    run = fake_run("a", 10, 1)
    edit_log(run, key, edit)
    assert sorted(reasons(run)) == sorted(expected)


def test_result_json_division_must_be_the_logged_one(fake_run):
    run = fake_run("a", 10, 0)
    edit_json(run / "result.json", division="half")
    assert sorted(reasons(run)) == ["result.json: division 'half' is not one of closed, open",
                                    "result.json: division is 'half' but the log says 'closed'"]


# ---------------------------------------------------------------------------------------------- divisions

def test_changed_fixed_key_is_invalid_in_the_closed_division(fake_run):
    assert reasons(fake_run("a", 10, 0, overrides=("SOLVER.BASE_LR", 0.2))) == [f"{CHANGED_LR}: {CLOSED_ONLY}"]


def test_changed_fixed_key_is_reported_in_the_open_division(fake_run):
    run = fake_run("a", 10, 0, division="open", overrides=("SOLVER.BASE_LR", 0.2))
    check = check_path(run)
    assert (check.reasons, check.deviations) == ([], [CHANGED_LR])
    a = assess([run])
    assert a.valid and a.benchmarks["tiny_cnn"].division == "open"
    assert a.all_deviations() == [f"{run}: {CHANGED_LR}"]
    assert report.verdict(a) == "VALID, open division: tiny_cnn; provisional: fewer than 5 runs of tiny_cnn"


def test_all_runs_of_a_benchmark_declare_one_division(fake_run):
    a = assess([fake_run("a", 10, 0), fake_run("b", 11, 1, division="open")])
    assert a.all_reasons() == ["tiny_cnn: runs declare different divisions (closed, open); all runs of a benchmark "
                               "must declare the same one"]


def test_code_other_than_the_versions_published(fake_run, reference):
    ours = code_provenance()["benchmark_digest"]  # what the test release publishes (publish_test_release)
    closed = fake_run("closed", 50, 0, benchmark_digest=OTHER_CODE)
    assert reasons(closed) == [f"code is not benchmark 1.0's (benchmark digest sha256:000000000000..., published "
                               f"{ours[:19]}...): {CLOSED_ONLY}"]
    assert not assess([closed], reference).valid
    opened = fake_run("open", 50, 0, benchmark_digest=OTHER_CODE, division="open")
    a = assess([opened], reference)
    assert a.valid, a.all_reasons()
    assert a.runs[0].deviations == [f"code is not benchmark 1.0's (benchmark digest sha256:000000000000..., "
                                    f"published {ours[:19]}...)"]
    assert a.benchmarks["tiny_cnn"].score == pytest.approx(2.0)


def test_open_division_is_labelled_in_every_output(fake_run, reference, tmp_path):
    a = assess([fake_run("cnn", 50, 0, division="open", overrides=("SOLVER.BASE_LR", 0.2)),
                fake_run("tr", 200, 0, benchmark="tiny_transformer", division="open")], reference)
    assert a.valid, a.all_reasons()
    text = report.format_text(a)
    assert "2.000 (open division)" in text and f"{CHANGED_LR}" in text
    assert "open division: deviations from the closed rules" in text
    data = json.loads(json.dumps(report.to_json(a)))
    assert data["benchmarks"]["tiny_cnn"]["division"] == "open" and data["suites"]["tiny"]["division"] == "open"
    assert data["runs"][0]["deviations"] == [CHANGED_LR] and data["deviations"] == [f"{a.runs[0].path}: {CHANGED_LR}"]
    report.write_report(a, tmp_path / "out")
    assert "2.000 (open division)" in (tmp_path / "out" / "report.md").read_text()


# ---------------------------------------------------------------------------------------------- convergence

def expected_p(sub_mean: float, n_sub: int) -> float:
    """One-sided p against the reference fixture, from the formula: 3 degrees of freedom for n_sub 2, where
    Student's CDF is 1/2 + (atan(x) + x / (1 + x^2)) / pi with x = t / sqrt(3)."""
    assert n_sub == 2
    t = (sub_mean - 7 / 3) / (math.sqrt(0.14) * math.sqrt(1 / 2 + 1 / 3))
    x = t / math.sqrt(3)
    return 0.5 + (math.atan(x) + x / (1 + x * x)) / math.pi


def test_convergence_like_the_reference_passes(fake_run, reference):
    a = assess([fake_run("a", 50, 0), fake_run("b", 50, 1)], reference)
    b = a.benchmarks["tiny_cnn"]
    assert b.convergence.p_value == pytest.approx(expected_p(2.0, 2)) and b.convergence.p_value > 0.05
    assert not b.convergence.faster and b.time_factor == 1.0 and b.score == pytest.approx(2.0)
    assert "passed (p 0.2" in report.format_text(a)


def test_faster_convergence_is_normalised_in_the_closed_division(fake_run, reference, tmp_path):
    a = assess([fake_run("a", 50, 0, n_evals=2), fake_run("b", 50, 1, n_evals=2)], reference)
    assert a.valid, a.all_reasons()
    b = a.benchmarks["tiny_cnn"]
    assert b.convergence.p_value == pytest.approx(expected_p(1.0, 2)) and b.convergence.p_value < 0.05
    assert b.time_factor == pytest.approx(7 / 3) and b.t_scored == pytest.approx(50 * 7 / 3)
    assert b.score == pytest.approx(100 / (50 * 7 / 3))
    assert b.deviations == [] and a.all_deviations() == []
    text = report.format_text(a)
    assert "normalised x2.333 (p 0.0149)" in text
    assert "closed division: t_bench 50.00 s normalised to 116.7 s (x2.333) for the score" in text
    data = report.to_json(a)["benchmarks"]["tiny_cnn"]
    assert data["convergence"]["normalised"] and data["t_scored_s"] == pytest.approx(50 * 7 / 3)
    assert data["convergence"]["reference_mean_epochs"] == pytest.approx(7 / 3)
    report.write_report(a, tmp_path / "out")
    assert "normalised to 116.7 s" in (tmp_path / "out" / "report.md").read_text()


def test_faster_convergence_is_reported_in_the_open_division(fake_run, reference):
    a = assess([fake_run("a", 50, 0, n_evals=2, division="open"),
                fake_run("b", 50, 1, n_evals=2, division="open")], reference)
    assert a.valid, a.all_reasons()
    b = a.benchmarks["tiny_cnn"]
    assert b.time_factor == 1.0 and b.score == pytest.approx(2.0)
    assert len(b.deviations) == 1 and b.deviations[0].startswith("convergence: mean 1 epochs to target over 2 run(s)")
    assert "significantly fewer epochs than the reference" in b.deviations[0]
    assert "faster, reported (p 0.0149)" in report.format_text(a)


def test_reference_without_epochs_is_not_checked(fake_run, reference, tmp_path):
    data = json.loads(reference.path.read_text())
    del data["benchmarks"]["tiny_cnn"]["epochs_to_target"]
    path = tmp_path / "old_style.json"
    path.write_text(json.dumps(data))
    a = assess([fake_run("a", 50, 0, n_evals=2)], load_reference(path))
    assert a.valid and a.benchmarks["tiny_cnn"].score == pytest.approx(2.0)
    assert a.all_notes() == ["tiny_cnn: the reference has no epochs_to_target; convergence not checked"]
    assert "not checked" in report.format_text(a)


# ---------------------------------------------------------------------------------------------- references

def test_reference_records_the_code_and_the_epochs(reference):
    entry = reference.entries["tiny_cnn"]
    assert (entry.benchmark_version, entry.benchmark_digest) == ("1.0", code_provenance()["benchmark_digest"])
    assert entry.epochs_to_target == (2.0, 2.0, 2.5, 2.5, 3.0)


def test_no_reference_from_runs_of_other_code(fake_run):
    a = assess([fake_run("a", 10, 0), fake_run("b", 11, 1, benchmark_digest=OTHER_CODE)])
    assert not a.valid
    with pytest.raises(ReferenceFileError, match="cannot make a reference from an invalid set"):
        make_reference(a, "test")


def test_no_reference_from_open_division_runs(fake_run):
    run = fake_run("a", 10, 0, division="open")
    with pytest.raises(ReferenceFileError, match=f"closed-division runs only; {run} is open"):
        make_reference(assess([run]), "test")


# ---------------------------------------------------------------------------------------------- duplicates

def test_the_same_run_given_twice(fake_run):
    run = fake_run("a", 10, 0)
    a = assess([run, run])
    assert f"{run} duplicates {run} (the same folder given twice); each run counts once" in a.reasons


def test_a_copied_run_folder(fake_run, tmp_path):
    run = fake_run("a", 10, 0)
    copy = shutil.copytree(run, tmp_path / "copy")
    edit_json(copy / "result.json")  # the same content, other bytes: result.json is not what identifies a run
    assert assess([run, copy]).reasons == [f"{copy} duplicates {run} (identical run_log.txt); each run counts once"]


def test_a_copy_with_an_edited_log_has_the_same_clock(fake_run, tmp_path):
    run = fake_run("a", 10, 0)
    copy = shutil.copytree(run, tmp_path / "copy")
    with open(copy / "run_log.txt", "a") as handle:
        handle.write("a line that is not MLLOG\n")
    assert assess([run, copy]).reasons == [f"{copy} duplicates {run} (the same run_start_ms and run_stop_ms); each "
                                           "run counts once"]


def test_distinct_runs_are_not_duplicates(fake_run):
    assert assess([fake_run("a", 10, 0), fake_run("b", 10, 1)]).reasons == []
