"""Reference files: made from valid runs, read back, and refused with one line when malformed or stale."""
from __future__ import annotations

import json

import pytest

from vmb.scoring.reference import FORMAT, ReferenceFileError, load_reference, write_reference
from vmb.scoring.assess import assess, make_reference

pytestmark = pytest.mark.usefixtures("tiny_benchmarks")


@pytest.fixture
def reference_data(fake_run) -> dict:
    runs = [fake_run("cnn", 100, 0), fake_run("cnn_1", 110, 1), fake_run("tr", 200, 0, benchmark="tiny_transformer")]
    return make_reference(assess(runs), "python tools/score.py --make-reference ...")


def test_made_from_valid_runs(reference_data, tmp_path):
    entry = reference_data["benchmarks"]["tiny_cnn"]
    assert reference_data["format"] == FORMAT
    assert entry["t_ref_s"] == pytest.approx(105.0) and entry["provisional"]
    assert (entry["n_devices_ref"], entry["device_unit"], entry["target_top1"]) == (1, "CPU processes", 40.0)
    assert entry["model_class"] == "cnn" and entry["hardware"].startswith("CPU only")
    assert [r["seed"] for r in entry["provenance"]["runs"]] == [0, 1]
    assert entry["provenance"]["command"].startswith("python tools/score.py")
    path = tmp_path / "refs" / "tiny.json"
    write_reference(reference_data, path)
    reference = load_reference(path)
    assert reference.entries["tiny_cnn"].t_ref_s == pytest.approx(105.0)
    assert set(reference.entries) == {"tiny_cnn", "tiny_transformer"}
    with pytest.raises(ReferenceFileError, match="already exists"):
        write_reference(reference_data, path)


def test_not_made_from_an_invalid_set(fake_run):
    with pytest.raises(ReferenceFileError, match="invalid set"):
        make_reference(assess([fake_run("a", 10, 0), fake_run("b", 10, 0)]), "x")  # same seed


@pytest.mark.parametrize("edit, needle", [
    (lambda d: d.pop("format"), "not a VMB reference"),
    (lambda d: d.update(benchmarks={}), "\"benchmarks\" must map"),
    (lambda d: d["benchmarks"].update(nope=d["benchmarks"].pop("tiny_cnn")), "benchmarks.nope: unknown benchmark"),
    (lambda d: d["benchmarks"]["tiny_cnn"].pop("t_ref_s"), "benchmarks.tiny_cnn: t_ref_s must be a number, got None"),
    (lambda d: d["benchmarks"]["tiny_cnn"].update(t_ref_s=0), "t_ref_s must be positive"),
    (lambda d: d["benchmarks"]["tiny_cnn"].update(n_devices_ref=1.5), "n_devices_ref must be an integer"),
    (lambda d: d["benchmarks"]["tiny_cnn"].update(device_unit="TPUs"), "device_unit must be one of"),
    (lambda d: d["benchmarks"]["tiny_cnn"].update(provenance="me"), "provenance must be a JSON object"),
    (lambda d: d["benchmarks"]["tiny_cnn"].pop("benchmark_digest"), "benchmark_digest must be a string, got None"),
    (lambda d: d["benchmarks"]["tiny_cnn"].update(benchmark_version=1.0), "benchmark_version must be a string"),
    (lambda d: d["benchmarks"]["tiny_cnn"].update(epochs_to_target=[2.0, 0]), "epochs_to_target must be a list of "
                                                                              "positive numbers"),
    (lambda d: d["benchmarks"]["tiny_cnn"].update(epochs_to_target=2.0), "epochs_to_target must be a list"),
])
def test_malformed_reference(reference_data, tmp_path, edit, needle):
    edit(reference_data)
    path = tmp_path / "ref.json"
    path.write_text(json.dumps(reference_data))
    with pytest.raises(ReferenceFileError) as info:
        load_reference(path)
    message = str(info.value)
    assert message.startswith(str(path)) and needle in message and "\n" not in message


def test_an_older_format_says_to_remake_it(reference_data, tmp_path):
    path = tmp_path / "ref.json"
    path.write_text(json.dumps({**reference_data, "format": "vmb-reference/2"}))
    with pytest.raises(ReferenceFileError) as info:
        load_reference(path)
    assert str(info.value) == (f"{path}: reference format vmb-reference/2 is not {FORMAT} (it lacks "
                               "benchmark_version and benchmark_digest); remake it: python tools/score.py "
                               "--make-reference RUNS -o FILE")


@pytest.mark.parametrize("text, needle", [("{", "not valid JSON"), ("[]", "not a VMB reference")])
def test_not_json(tmp_path, text, needle):
    path = tmp_path / "ref.json"
    path.write_text(text)
    with pytest.raises(ReferenceFileError, match=needle):
        load_reference(path)


def test_missing_reference(tmp_path):
    with pytest.raises(ReferenceFileError, match="cannot read the reference"):
        load_reference(tmp_path / "none.json")


def test_stale_reference_makes_the_set_invalid(reference_data, fake_run, tmp_path):
    reference_data["benchmarks"]["tiny_cnn"].update(target_top1=50.0, fixed_config_digest="0" * 64)
    path = tmp_path / "ref.json"
    write_reference(reference_data, path)
    a = assess([fake_run("new", 100, 0)], load_reference(path))
    assert a.all_reasons() == [
        "tiny_cnn: the reference's target 50.0 is not benchmark 1.0's target 40.0",
        "tiny_cnn: the reference was measured with another canonical config than benchmark 1.0's "
        "(fixed_config_digest)"]
