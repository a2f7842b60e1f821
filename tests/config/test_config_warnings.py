"""A key set to a non-default value that the rest of the config makes the code ignore gets one warning line on
stderr, once per process and key; the shipped configs and the defaults load without any."""
from __future__ import annotations

import pathlib

import pytest
import torch

from vmb.config import config_from_yaml_text, flat_items, get_defaults, load, load_config
from vmb.data.loader import clip_spec_from_cfg
from vmb.engine.mixup import build_mixup
from vmb.engine.optim import build_optimizer, lr_schedule
from vmb.engine.precision import training_precision

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG_FILES = sorted(REPO_ROOT.glob("configs/**/*.yaml"))
RRC = ["DATA.TRAIN_JITTER_SCALES_RELATIVE", "[0.08, 1.0]", "DATA.TRAIN_JITTER_ASPECT_RELATIVE", "[0.75, 1.33]"]
# Ignored key -> overrides that set it to a non-default value in a combination that ignores it.
CASES = {
    "SOLVER.MOMENTUM": ["SOLVER.OPTIMIZING_METHOD", "adamw", "SOLVER.MOMENTUM", "0.8"],
    "SOLVER.NESTEROV": ["SOLVER.OPTIMIZING_METHOD", "adamw", "SOLVER.NESTEROV", "False"],
    "SOLVER.WARMUP_START_LR": ["SOLVER.WARMUP_START_LR", "0.02"],
    "SOLVER.COSINE_AFTER_WARMUP": ["SOLVER.COSINE_AFTER_WARMUP", "True"],
    "BN.WEIGHT_DECAY": ["SOLVER.ZERO_WD_1D_PARAM", "True", "BN.WEIGHT_DECAY", "1e-4"],
    "TRAIN.AMP_DTYPE": ["TRAIN.AMP_DTYPE", "bfloat16"],
    "MIXUP.ALPHA": ["MIXUP.ALPHA", "0.4"],
    "MIXUP.CUTMIX_ALPHA": ["MIXUP.CUTMIX_ALPHA", "0.5"],
    "MIXUP.LABEL_SMOOTH_VALUE": ["MIXUP.LABEL_SMOOTH_VALUE", "0.0"],
    "AUG.RAND_NUM_OPS": ["AUG.RAND_NUM_OPS", "2"],
    "AUG.RAND_MAGNITUDE": ["AUG.RAND_MAGNITUDE", "9"],
    "AUG.RAND_MAGNITUDE_STD": ["AUG.RAND_MAGNITUDE_STD", "0"],
    "AUG.RE_PROB": ["AUG.RE_PROB", "0.25"],
    "DATA.TRAIN_JITTER_SCALES": [*RRC, "DATA.TRAIN_JITTER_SCALES", "[240, 300]"],
    "SYNTHETIC.TRAIN_PER_CLASS": ["SYNTHETIC.TRAIN_PER_CLASS", "4"],
    "SYNTHETIC.VAL_PER_CLASS": ["SYNTHETIC.VAL_PER_CLASS", "2"],
    "SYNTHETIC.SEED": ["SYNTHETIC.SEED", "1"],
    "X3D.WIDTH_FACTOR": ["MODEL.ARCH", "mvit", "X3D.WIDTH_FACTOR", "0.5"],
    "X3D.ZERO_INIT_FINAL_BN": ["MODEL.ARCH", "mvit", "X3D.ZERO_INIT_FINAL_BN", "False"],
    "MVIT.DEPTH": ["MVIT.DEPTH", "4"],
}


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch):
    """Each test starts as a new process would: nothing warned yet."""
    monkeypatch.setattr(load, "_warned", set())


def warnings_of(capsys: pytest.CaptureFixture) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: config:")]


@pytest.mark.parametrize("path", [None, *CONFIG_FILES],
                         ids=lambda path: str(path.relative_to(REPO_ROOT)) if path else "defaults")
def test_shipped_configs_load_without_warnings(path, capsys):
    load_config(path)
    assert warnings_of(capsys) == []


def test_every_ignored_combination_is_tested():
    assert [rule.when for rule in load.IGNORED if not set(rule.keys) & set(CASES)] == []
    assert set(CASES) <= {key for rule in load.IGNORED for key in rule.keys}


@pytest.mark.parametrize("key", sorted(CASES))
def test_ignored_key_warns_once(key, capsys):
    cfg = load_config(None, CASES[key])
    rule = next(rule for rule in load.IGNORED if key in rule.keys)
    assert warnings_of(capsys) == [f"warning: config: {key} {flat_items(cfg)[key]} is ignored: {rule.when}"]
    load_config(None, CASES[key])  # once per process and key
    assert warnings_of(capsys) == []


def test_no_warning_at_the_default_value_or_where_the_key_is_used(capsys):
    load_config(None, ["SOLVER.OPTIMIZING_METHOD", "adamw", "SOLVER.MOMENTUM", "0.9"])  # the default, typed
    load_config(None, ["SOLVER.MOMENTUM", "0.8"])  # sgd uses it
    load_config(None, ["TRAIN.MIXED_PRECISION", "True", "TRAIN.AMP_DTYPE", "bfloat16"])
    load_config(None, ["MIXUP.ENABLE", "True", "MIXUP.ALPHA", "0.4"])
    load_config(None, ["AUG.ENABLE", "True", "AUG.RE_PROB", "0.25"])
    assert warnings_of(capsys) == []


def test_a_yaml_file_warns_too_and_a_run_folder_config_does_not(tmp_path, capsys):
    path = tmp_path / "cfg.yaml"
    path.write_text("SOLVER:\n  OPTIMIZING_METHOD: adamw\n  NESTEROV: False\n")
    cfg = load_config(path)
    assert warnings_of(capsys) == ["warning: config: SOLVER.NESTEROV False is ignored: SOLVER.OPTIMIZING_METHOD is "
                                   "not sgd (only SGD takes momentum)"]
    load._warned.clear()
    config_from_yaml_text(cfg.dump(), "run/config.yaml")  # reading a finished run back is no place to warn
    assert warnings_of(capsys) == []


def test_the_ignored_keys_change_nothing():
    """What the warnings say, checked where the code reads the keys."""
    def loaded(*overrides):
        return load_config(None, list(overrides))

    model = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 1), torch.nn.BatchNorm3d(4))
    adamw = loaded("SOLVER.OPTIMIZING_METHOD", "adamw")
    adamw_other = loaded(*CASES["SOLVER.MOMENTUM"], "SOLVER.NESTEROV", "False")
    assert build_optimizer(model, adamw).state_dict() == build_optimizer(model, adamw_other).state_dict()
    zero_wd = loaded("SOLVER.ZERO_WD_1D_PARAM", "True")
    assert build_optimizer(model, zero_wd).state_dict() == \
        build_optimizer(model, loaded(*CASES["BN.WEIGHT_DECAY"])).state_dict()
    schedules = [lr_schedule(loaded(*overrides)) for overrides in
                 ([], CASES["SOLVER.WARMUP_START_LR"], CASES["SOLVER.COSINE_AFTER_WARMUP"])]
    assert len({tuple(schedule(e) for e in (0.0, 0.5, 7.0, 150.0)) for schedule in schedules}) == 1
    cpu_and_gpu = [torch.device("cpu"), torch.device("cuda")]
    assert [training_precision(loaded(*CASES["TRAIN.AMP_DTYPE"]), device) for device in cpu_and_gpu] == ["fp32"] * 2
    assert all(build_mixup(loaded(*CASES[key])) is None for key in CASES if key.startswith("MIXUP."))
    assert all(clip_spec_from_cfg(loaded(*CASES[key])) == clip_spec_from_cfg(get_defaults())
               for key in CASES if key.startswith("AUG."))
