"""The one vocabulary of what a run writes (vmb.record.schema): result.json's typed fields, VMB's own log keys as
the compliance rules name them, and the resume rule."""
from __future__ import annotations

import dataclasses
import re
from importlib import resources
from types import SimpleNamespace

from vmb.record import schema


def test_checked_result_fields_are_typed_and_belong_to_result():
    names = {f.name for f in dataclasses.fields(schema.Result)}
    assert set(schema.RESULT_FIELDS) <= names
    assert schema.RESULT_FIELDS["time_to_target_s"] == schema.NUMBER and schema.RESULT_FIELDS["seed"] == schema.INTEGER
    assert schema.RESULT_FIELDS["git_commit"] == schema.STRING_OR_NULL and schema.RESULT_FIELDS["evals"] is list
    assert set(schema.PROVENANCE_FIELDS) <= set(schema.RESULT_FIELDS)
    assert "arch" not in schema.RESULT_FIELDS and "energy_j" not in schema.RESULT_FIELDS  # reported, not required


def test_result_round_trips_as_json_fields():
    values = {f.name: f.name for f in dataclasses.fields(schema.Result)}
    assert schema.Result(**values).to_json() == values


def test_compliance_rules_name_only_vmb_s_own_keys():
    """The rule YAMLs are data for mlperf-logging's checker and cannot import the constants: every vmb_* key they
    name must be one of schema.VMB_KEYS."""
    rules_dir = resources.files("vmb.scoring") / "rules"
    named = {key for version in rules_dir.iterdir() if version.is_dir() for rule in version.iterdir()
             if rule.name == "compliance.yaml" for key in re.findall(r"\bvmb_[a-z_]+\b", rule.read_text())}
    assert named and named <= set(schema.VMB_KEYS), named - set(schema.VMB_KEYS)
    assert len(set(schema.VMB_KEYS)) == len(schema.VMB_KEYS) and all(k.startswith("vmb_") for k in schema.VMB_KEYS)


def _event(key, value=None, epoch=None):
    return SimpleNamespace(key=key, value=value, metadata={} if epoch is None else {"epoch_num": epoch})


def test_a_resume_supersedes_the_evaluations_after_its_checkpoint():
    events = [_event("eval_accuracy", 10.0, 0.5), _event("eval_accuracy", 20.0, 1.0),
              _event("eval_accuracy", 30.0, 1.5), _event(schema.RESUME, 1, 1), _event("eval_accuracy", 31.0, 1.5)]
    assert [e.value for e in schema.effective_evals(events)] == [10.0, 20.0, 31.0]
