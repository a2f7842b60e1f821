"""Every validity check, passing on real runs and failing on tampered copies, and the set's verdict."""
from __future__ import annotations

import json
import pathlib

import pytest

from vmb.scoring import assess as assess_module, compliance, validate
from vmb.scoring.reference import load_reference, write_reference
from vmb.scoring.assess import assess, check_path, make_reference
from vmb.scoring.validate import load_run

pytestmark = pytest.mark.usefixtures("tiny_benchmarks")


def edit_json(path: pathlib.Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def log_lines(run: pathlib.Path) -> list[str]:
    return (run / "run_log.txt").read_text().splitlines()


def write_log(run: pathlib.Path, lines: list[str]) -> None:
    (run / "run_log.txt").write_text("\n".join(lines) + "\n")


def line_of(lines: list[str], key: str, last: bool = False) -> int:
    found = [i for i, line in enumerate(lines) if f'"key": "{key}"' in line]
    return found[-1] if last else found[0]


def reasons(run: pathlib.Path) -> list[str]:
    return check_path(run).reasons


def only_reason(run: pathlib.Path, *needles: str) -> str:
    """The run's reasons mention every needle in one reason; returns that reason."""
    found = reasons(run)
    matching = [r for r in found if all(n in r for n in needles)]
    assert matching, f"{needles} not in {found}"
    assert all("\n" not in r for r in found)
    return matching[0]


# ---------------------------------------------------------------------------------------------- real runs pass

def test_real_runs_pass_every_check(tiny_runs):
    for path in tiny_runs.values():
        run = load_run(path)
        assert validate.check_run(run) == []
        assert compliance.check_log(path / "run_log.txt", validate.run_release(run).compliance_rules) == []


def test_real_pair_is_valid_and_provisional(tiny_runs):
    a = assess(list(tiny_runs.values()))
    assert a.valid, a.all_reasons()
    assert set(a.benchmarks) == {"tiny_cnn", "tiny_transformer"}
    for name, b in a.benchmarks.items():
        assert b.summary.provisional and b.summary.method == "mean"
        assert b.summary.t_bench == json.loads((tiny_runs[name] / "result.json").read_text())["time_to_target_s"]
        assert (b.n_devices, b.device_unit, b.score) == (1, "CPU processes", None)
    assert a.suites["tiny"].benchmark_score is None and "reference" in a.suites["tiny"].note


# ---------------------------------------------------------------------------------------------- loading

def test_missing_path(tmp_path):
    assert reasons(tmp_path / "nope") == ["no such folder"]


def test_a_file_is_not_a_run_folder(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    assert reasons(tmp_path / "f.txt") == ["not a run folder"]


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    assert reasons(tmp_path / "empty")[0].startswith("not a run folder (no run_log.txt")


def test_unreadable_folder(tmp_path, monkeypatch):
    def denied(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(pathlib.Path, "iterdir", denied)
    assert reasons(tmp_path) == ["cannot read the folder (Permission denied)"]


def test_unfinished_run(run_copy):
    (run_copy / "result.json").unlink()
    assert "the run did not finish" in reasons(run_copy)[0]


def test_incomplete_run(run_copy):
    (run_copy / "system.json").unlink()
    assert reasons(run_copy) == ["incomplete run folder (system.json missing)"]


@pytest.mark.parametrize("text, needle", [("", "not valid JSON"), ("{\"status\": ", "not valid JSON"),
                                          ("[1, 2]", "not a JSON object"), ("NaN", "not valid JSON")])
def test_malformed_result(run_copy, text, needle):
    (run_copy / "result.json").write_text(text)
    assert needle in reasons(run_copy)[0]


def test_result_field_missing_or_wrong_type(run_copy):
    data = json.loads((run_copy / "result.json").read_text())
    del data["time_to_target_s"]
    (run_copy / "result.json").write_text(json.dumps(data))
    assert "field time_to_target_s is missing" in reasons(run_copy)[0]
    edit_json(run_copy / "result.json", time_to_target_s="fast")
    assert "time_to_target_s must be a number" in reasons(run_copy)[0]


def test_config_is_read_as_safe_yaml_only(run_copy, tmp_path):
    marker = tmp_path / "executed"
    (run_copy / "config.yaml").write_text(f"!!python/object/apply:os.system ['touch {marker}']\n")
    assert "not valid YAML" in reasons(run_copy)[0]
    assert not marker.exists()


def test_config_with_unknown_key(run_copy):
    with open(run_copy / "config.yaml", "a") as handle:
        handle.write("NOT_A_KEY: 1\n")
    assert "unknown config key NOT_A_KEY" in reasons(run_copy)[0]


def test_truncated_log_line(run_copy):
    text = (run_copy / "run_log.txt").read_text()
    (run_copy / "run_log.txt").write_text(text[:len(text) // 2])
    assert "malformed MLLOG line" in reasons(run_copy)[0]


# ---------------------------------------------------------------------------------------------- config, target

def test_changed_fixed_key_shows_the_diff(run_copy):
    text = (run_copy / "config.yaml").read_text()
    (run_copy / "config.yaml").write_text(text.replace("BASE_LR: 0.1", "BASE_LR: 0.2"))
    assert sorted(reasons(run_copy)) == [
        "config.yaml changes fixed keys (SOLVER.BASE_LR: 0.1 -> 0.2): closed division invalid; submit in the open "
        "division (BENCHMARK.DIVISION open) to report it",
        "result.json: config_digest is not the digest of config.yaml",
        "result.json: fixed_config_digest is not the digest of config.yaml",
        "run_log.txt: opt_base_learning_rate is 0.1 but config.yaml's SOLVER.BASE_LR is 0.2",
        "run_log.txt: vmb_config_digest is not the digest of config.yaml (changed after the run?)"]


def test_resource_keys_may_change(fake_run):
    assert reasons(fake_run("a", 10, 0, overrides=("DATA_LOADER.NUM_WORKERS", 6, "TEST.BATCH_SIZE", 3))) == []


def test_config_edited_after_the_run_is_caught_by_the_log(run_copy):
    """A changed resource key with result.json's digests recomputed: only the log's vmb_config_digest tells."""
    from vmb.config import config_digest, config_from_yaml_text

    text = (run_copy / "config.yaml").read_text().replace("NUM_WORKERS: 0", "NUM_WORKERS: 6")
    (run_copy / "config.yaml").write_text(text)
    edit_json(run_copy / "result.json", config_digest=config_digest(config_from_yaml_text(text, "x")))
    assert reasons(run_copy) == ["run_log.txt: vmb_config_digest is not the digest of config.yaml (changed after "
                                 "the run?)"]


def test_target_must_be_the_canonical_one(run_copy):
    edit_json(run_copy / "result.json", target_top1=10.0)
    only_reason(run_copy, "target_top1 10.0 is not benchmark 1.0's target 40.0")
    only_reason(run_copy, "target_top1 is 10.0 but the log says 40.0")


def test_unknown_benchmark(run_copy):
    edit_json(run_copy / "result.json", benchmark="resnet")
    only_reason(run_copy, "unknown benchmark 'resnet'")


# ---------------------------------------------------------------------------------------------- consistency

@pytest.mark.parametrize("field, value, needle", [
    ("time_to_target_s", 0.01, "time_to_target_s is 0.01 but the log gives"),
    ("status", "aborted", "status is 'aborted' but run_stop says 'success'"),
    ("best_top1", 99.0, "best_top1 is 99.0 but the log's best"),
    ("seed", 7, "seed is 7 but the log says 0"),
    ("global_batch_size", 8, "global_batch_size is 8 but the log says 4"),
    ("n_devices", 4, "submission_platform is '1xcpu'"),
    ("run_start_ms", 5, "run_start_ms/run_stop_ms are not the log's"),
    ("evals", [], "evals do not match the log"),
    ("device_type", "tpu", "device_type 'tpu' is neither"),
])
def test_tampered_result_disagrees_with_log(run_copy, field, value, needle):
    edit_json(run_copy / "result.json", **{field: value})
    only_reason(run_copy, "result.json", needle)


def test_log_without_run_stop(run_copy):
    lines = log_lines(run_copy)
    write_log(run_copy, lines[:line_of(lines, "run_stop")])
    only_reason(run_copy, "no run_stop")
    only_reason(run_copy, "Required EXACTLY_ONE occurrence of 'run_stop' but found 0")


def test_empty_log(run_copy):
    (run_copy / "run_log.txt").write_text("")
    assert reasons(run_copy) == ["run_log.txt: no MLLOG events (empty, or not a run log)", "run_log.txt: no :::MLLOG lines"]


def test_time_going_backwards(run_copy):
    lines = log_lines(run_copy)
    i = line_of(lines, "eval_accuracy")
    record = json.loads(lines[i][len(":::MLLOG "):])
    record["time_ms"] -= 10 ** 6
    lines[i] = ":::MLLOG " + json.dumps(record)
    write_log(run_copy, lines)
    only_reason(run_copy, f"run_log.txt:{i + 1}: time goes backwards")


def test_events_after_run_stop(run_copy):
    lines = log_lines(run_copy)
    write_log(run_copy, lines + [lines[line_of(lines, "eval_accuracy")].replace('"time_ms": ', '"time_ms": 1')])
    only_reason(run_copy, "eval_accuracy after run_stop")
    only_reason(run_copy, f"run_log.txt:{len(lines) + 1}: eval_accuracy: ")  # the checker keeps one failure per key


# ---------------------------------------------------------------------------------------------- compliance

def test_missing_required_key(run_copy):
    lines = log_lines(run_copy)
    del lines[line_of(lines, "seed")]
    write_log(run_copy, lines)
    assert reasons(run_copy) == ["run_log.txt: seed is logged 0 times (exactly once, config.yaml's RNG_SEED)",
                                 "run_log.txt: Required EXACTLY_ONE occurrence of 'seed' but found 0"]


def test_aborted_although_the_target_was_reached(run_copy):
    lines = log_lines(run_copy)
    i = line_of(lines, "run_stop")
    lines[i] = lines[i].replace('"status": "success"', '"status": "aborted"')
    write_log(run_copy, lines)
    edit_json(run_copy / "result.json", status="aborted")
    assert reasons(run_copy) == [f"run_log.txt:{i + 1}: run_stop: status aborted but an evaluation reached the target"]


def test_evaluation_after_the_target_was_reached(run_copy):
    lines = log_lines(run_copy)
    i = line_of(lines, "run_stop")
    hit = lines[line_of(lines, "eval_accuracy", last=True)]
    lines.insert(i, hit)  # the run went on after reaching the target
    write_log(run_copy, lines)
    only_reason(run_copy, f"run_log.txt:{i + 1}: eval_accuracy: an evaluation after the one that reached the target")


def test_success_without_reaching_the_target(run_copy):
    lines = log_lines(run_copy)
    i = line_of(lines, "eval_accuracy", last=True)
    record = json.loads(lines[i][len(":::MLLOG "):])
    record["value"] = 10.0
    lines[i] = ":::MLLOG " + json.dumps(record)
    write_log(run_copy, lines)
    only_reason(run_copy, "run_stop: status success but no evaluation reached the target")


def test_epoch_going_backwards(run_copy):
    lines = log_lines(run_copy)
    i = line_of(lines, "eval_accuracy", last=True)
    lines[i] = lines[i].replace('"epoch_num": ', '"epoch_num": -')
    write_log(run_copy, lines)
    only_reason(run_copy, f"run_log.txt:{i + 1}: eval_accuracy: the epoch went backwards")


def test_wrong_type_in_log(run_copy):
    lines = log_lines(run_copy)
    i = line_of(lines, "eval_accuracy")
    record = json.loads(lines[i][len(":::MLLOG "):])
    record["metadata"]["epoch_num"] = "one"
    lines[i] = ":::MLLOG " + json.dumps(record)
    write_log(run_copy, lines)
    only_reason(run_copy, "eval_accuracy", "numeric epoch_num")


def test_log_lines_the_checker_cannot_parse(run_copy):
    lines = log_lines(run_copy)
    lines[0] = lines[0].replace(', "metadata": {', ', "meta": {')
    write_log(run_copy, lines)
    only_reason(run_copy, "the compliance checker cannot parse it")


# ---------------------------------------------------------------------------------------------- the set

def test_olympic_mean_over_five_runs(fake_run):
    paths = [fake_run(f"r{seed}", seconds, seed) for seed, seconds in enumerate([100, 90, 130, 110, 120])]
    a = assess(paths)
    assert a.valid, a.all_reasons()
    s = a.benchmarks["tiny_cnn"].summary
    assert (s.method, s.provisional, s.t_bench) == ("olympic mean", False, pytest.approx(110.0))


def test_one_failed_run_is_allowed_two_are_not(fake_run):
    paths = [fake_run(f"r{seed}", seconds, seed) for seed, seconds in enumerate([100, 90, 120, 110])]
    failed = fake_run("failed", 500, 4, success=False)
    a = assess(paths + [failed])
    assert a.valid and a.benchmarks["tiny_cnn"].summary.t_bench == pytest.approx(110.0)
    a = assess(paths + [failed, fake_run("failed2", 500, 5, success=False)])
    assert not a.valid
    assert "tiny_cnn: 2 of 6 runs missed the target (at most 1 may)" in a.all_reasons()


def test_a_single_run_that_missed_the_target_is_invalid(fake_run):
    a = assess([fake_run("failed", 50, 0, success=False)])
    assert a.all_reasons() == ["tiny_cnn: no run reached the target"]


def test_runs_must_not_share_a_seed(fake_run):
    a = assess([fake_run("a", 10, 0), fake_run("b", 12, 0)])
    assert a.all_reasons() == ["tiny_cnn: 2 run(s) must use RNG_SEED 0 to 1, each once (rules.expected_seeds); "
                               "these use 0, 0"]


@pytest.mark.parametrize("seeds", [(1,), (0, 2), (1, 2, 3), (0, 1, 1)])
def test_seeds_must_be_0_to_n_minus_1(fake_run, seeds):
    a = assess([fake_run(f"r{i}", 10 + i, seed) for i, seed in enumerate(seeds)])
    assert not a.valid
    assert a.all_reasons() == [f"tiny_cnn: {len(seeds)} run(s) must use RNG_SEED 0 to {len(seeds) - 1}, each once "
                               f"(rules.expected_seeds); these use {', '.join(map(str, sorted(seeds)))}"]


def test_seeds_0_to_n_minus_1_in_any_order_are_valid(fake_run):
    assert assess([fake_run("b", 12, 1), fake_run("c", 11, 2), fake_run("a", 10, 0)]).valid


def test_mixed_datasets_are_invalid(fake_run):
    a = assess([fake_run("a", 10, 0), fake_run("b", 12, 0, benchmark="tiny_transformer", fingerprint="sha256:00")])
    assert len(a.all_reasons()) == 1 and "suite tiny: runs used 2 different datasets" in a.all_reasons()[0]


def test_unprepared_fingerprints_compare_like_any_other(fake_run):
    unprepared = "unprepared:sha256:" + "cd" * 32
    same = assess([fake_run("a", 10, 0, fingerprint=unprepared), fake_run("b", 12, 1, fingerprint=unprepared)])
    assert same.valid, same.all_reasons()
    mixed = assess([fake_run("c", 10, 0), fake_run("d", 12, 1, fingerprint=unprepared)])
    assert mixed.all_reasons() == ["suite tiny: runs used 2 different datasets (fingerprints sha256:abababababab..., "
                                   "unprepared:sha256:cdcdcdcdcdcd...); a set uses one dataset"]


def test_mixed_devices_are_invalid(fake_run):
    a = assess([fake_run("a", 10, 0), fake_run("b", 12, 1, n_devices=2)])
    assert a.all_reasons() == ["tiny_cnn: runs use different devices (1 cpu, 2 cpu); all runs of a benchmark must "
                               "use the same ones"]


def test_bad_paths_make_the_set_invalid_without_stopping_it(fake_run, tmp_path):
    good = fake_run("good", 10, 0)
    a = assess([good, tmp_path / "missing"])
    assert not a.valid and a.all_reasons() == [f"{tmp_path / 'missing'}: no such folder"]
    assert a.benchmarks["tiny_cnn"].summary.t_bench == 10.0
    assert not assess([]).valid


def test_scores_against_a_reference(fake_run, tmp_path):
    made = assess([fake_run("cnn", 100, 0), fake_run("tr", 200, 0, benchmark="tiny_transformer")])
    ref_path = tmp_path / "ref.json"
    write_reference(make_reference(made, "test"), ref_path)
    reference = load_reference(ref_path)
    # Twice as fast on the CNN, as fast on the transformer: (2 + 1) / 2.
    a = assess([fake_run("cnn2", 50, 0), fake_run("tr2", 200, 0, benchmark="tiny_transformer")], reference)
    assert a.valid, a.all_reasons()
    assert a.benchmarks["tiny_cnn"].score == pytest.approx(2.0)
    assert a.benchmarks["tiny_transformer"].score == pytest.approx(1.0)
    assert a.suites["tiny"].benchmark_score == pytest.approx(1.5)
    # Two CPU processes for the same time: half the score per process.
    a = assess([fake_run("cnn3", 100, 0, n_devices=2)], reference)
    assert a.benchmarks["tiny_cnn"].score == pytest.approx(0.5)
    assert a.suites["tiny"].benchmark_score is None and "no runs of tiny_transformer" in a.suites["tiny"].note


def test_dataset_must_match_the_reference(fake_run, tmp_path):
    ref_path = tmp_path / "ref.json"
    write_reference(make_reference(assess([fake_run("cnn", 100, 0)]), "test"), ref_path)
    a = assess([fake_run("other", 100, 0, fingerprint="sha256:00")], load_reference(ref_path))
    assert len(a.all_reasons()) == 1 and "differs from the reference's" in a.all_reasons()[0]
    assert a.benchmarks["tiny_cnn"].score is None


def test_device_unit_must_match_the_reference(fake_run, tmp_path):
    ref_path = tmp_path / "ref.json"
    data = make_reference(assess([fake_run("cnn", 100, 0)]), "test")
    data["benchmarks"]["tiny_cnn"]["device_unit"] = "GPUs"
    write_reference(data, ref_path)
    a = assess([fake_run("b", 100, 0)], load_reference(ref_path))
    assert a.all_reasons() == ["tiny_cnn: runs count CPU processes but the reference counts GPUs"]


def test_unforeseen_error_is_one_line_for_that_run(run_copy, monkeypatch):
    def broken(run):
        raise RuntimeError("surprise\nsecond line")

    monkeypatch.setattr(assess_module, "check_run", broken)
    assert reasons(run_copy) == ["cannot be checked (RuntimeError: surprise)"]


def test_metadata_of_the_wrong_type(run_copy):
    lines = log_lines(run_copy)
    record = json.loads(lines[-1][len(":::MLLOG "):])
    record["metadata"] = [1, 2]
    lines[-1] = ":::MLLOG " + json.dumps(record)
    write_log(run_copy, lines)
    only_reason(run_copy, "malformed MLLOG line", "metadata")


def _edit_eval_accuracy(run_dir, edit) -> None:
    """Apply `edit(line_dict)` to the first eval_accuracy line of the run log."""
    log = run_dir / "run_log.txt"
    lines = log.read_text().splitlines()
    for i, line in enumerate(lines):
        if '"key": "eval_accuracy"' in line:
            prefix, body = line.split(" ", 1)
            record = json.loads(body)
            edit(record)
            lines[i] = f"{prefix} {json.dumps(record)}"
            break
    log.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("edit,reason", [
    (lambda r: r["metadata"].pop("correct"), "lacks valid correct/total counts"),
    (lambda r: r["metadata"].update(total=999), "counted 999 videos but eval_samples is 1000"),
    (lambda r: r["metadata"].update(correct=r["metadata"]["correct"] + 1), "but its counts give"),
])
def test_top1_is_recomputed_from_the_logged_counts(fake_run, edit, reason):
    run = fake_run("a", 10, 0)
    assert assess([run]).valid
    _edit_eval_accuracy(run, edit)
    a = assess([run])
    assert not a.valid and any(reason in r for r in a.all_reasons()), a.all_reasons()


def test_a_linked_run_file_is_refused_and_never_read(run_copy, tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_text((run_copy / "system.json").read_text().replace("}", ', "secret": "MARKER"}', 1))
    (run_copy / "system.json").unlink()
    (run_copy / "system.json").symlink_to(outside)
    with pytest.raises(validate.RunFolderError) as info:
        load_run(run_copy)
    assert str(info.value) == f"{run_copy}: system.json: symbolic link(s); a run folder holds its own files"
    assert check_path(run_copy).reasons == ["system.json: symbolic link(s); a run folder holds its own files"]
