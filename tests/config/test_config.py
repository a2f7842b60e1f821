"""Config loading: defaults <- YAML <- `KEY VALUE` overrides, type coercion, one-line errors, freezing, digests."""
from __future__ import annotations

import pathlib
import shutil

import pytest

from vmb import rules
from vmb.config import config_digest, config_from_yaml_text, flat_items, get_defaults, load_config
from vmb.errors import ConfigError, VMBError

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG_FILES = sorted(REPO_ROOT.glob("configs/**/*.yaml"))
# Kinetics20 benchmark configs and their published targets (top-1 %).
KINETICS_TARGETS = {"X3D_M.yaml": 20.11, "MVIT_B_16x4.yaml": 20.59}


def write(tmp_path: pathlib.Path, text: str, name: str = "cfg.yaml") -> pathlib.Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_load_and_validate():
    cfg = load_config(None)
    defaults = get_defaults()
    assert flat_items(cfg) == flat_items(defaults)
    assert cfg.MODEL.ARCH == "x3d"
    assert cfg.SOLVER.BASE_LR == 0.1
    assert isinstance(cfg.SOLVER.WEIGHT_DECAY, float)
    assert cfg.TRAIN.BATCH_SIZE == 128


def test_yaml_then_overrides(tmp_path):
    path = write(tmp_path, "SOLVER:\n  BASE_LR: 1\n  WEIGHT_DECAY: 5e-5\n  MAX_EPOCH: 7\nTRAIN:\n  BATCH_SIZE: 8\n")
    cfg = load_config(path, ["TRAIN.BATCH_SIZE", "16", "SOLVER.WARMUP_EPOCHS", "2",
                             "DATA.TRAIN_JITTER_SCALES", "[32,40]", "DATA.TRAIN_CROP_SIZE", "32",
                             "OUTPUT_DIR", str(tmp_path / "out"),
                             "TRAIN.AUTO_RESUME", "False"])
    # YAML int for a float key becomes a float; PyYAML's "5e-5" string becomes a float.
    assert cfg.SOLVER.BASE_LR == 1.0 and isinstance(cfg.SOLVER.BASE_LR, float)
    assert cfg.SOLVER.WEIGHT_DECAY == pytest.approx(5e-5) and isinstance(cfg.SOLVER.WEIGHT_DECAY, float)
    assert cfg.SOLVER.MAX_EPOCH == 7
    # Overrides win over the YAML and are typed like the defaults.
    assert cfg.TRAIN.BATCH_SIZE == 16 and isinstance(cfg.TRAIN.BATCH_SIZE, int)
    assert cfg.SOLVER.WARMUP_EPOCHS == 2.0 and isinstance(cfg.SOLVER.WARMUP_EPOCHS, float)
    assert list(cfg.DATA.TRAIN_JITTER_SCALES) == [32, 40]
    assert cfg.OUTPUT_DIR == str(tmp_path / "out")
    assert cfg.TRAIN.AUTO_RESUME is False
    # Untouched keys keep their defaults.
    assert cfg.MODEL.NUM_CLASSES == get_defaults().MODEL.NUM_CLASSES


def test_string_override_that_looks_like_a_number_stays_a_string(tmp_path):
    # `OUTPUT_DIR 123` names a folder "123": a str key must take the command-line text as it is.
    cfg = load_config(None, ["OUTPUT_DIR", "123", "BENCHMARK.NAME", "2024"])
    assert cfg.OUTPUT_DIR == "123"
    assert cfg.BENCHMARK.NAME == "2024"


def test_unknown_key_suggests_nearest():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["SOLVER.BASE_RL", "0.1"])
    message = str(info.value)
    assert "SOLVER.BASE_RL" in message
    assert "did you mean SOLVER.BASE_LR" in message
    assert "\n" not in message


def test_unknown_key_in_yaml_names_file(tmp_path):
    path = write(tmp_path, "TRAIN:\n  BATCH_SIZ: 8\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "TRAIN.BATCH_SIZ" in str(info.value)
    assert "TRAIN.BATCH_SIZE" in str(info.value)


def test_wrong_type_names_key():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["TRAIN.BATCH_SIZE", "abc"])
    assert "TRAIN.BATCH_SIZE" in str(info.value)
    assert "abc" in str(info.value)


@pytest.mark.parametrize("key,value", [
    ("TRAIN.BATCH_SIZE", "4.5"),     # float for an int key
    ("SYNTHETIC.ENABLE", "1"),       # int for a bool key
    ("DATA.TRAIN_JITTER_SCALES", "32"),  # scalar for a list key
    ("SOLVER.BASE_LR", "fast"),      # text for a float key
])
def test_wrong_types_rejected(key, value):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [key, value])


def test_bad_choice_names_key_and_choices():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["MODEL.ARCH", "resnet"])
    message = str(info.value)
    assert "MODEL.ARCH" in message and "resnet" in message
    assert "x3d" in message and "mvit" in message


@pytest.mark.parametrize("overrides,key", [
    (["TRAIN.BATCH_SIZE", "0"], "TRAIN.BATCH_SIZE"),
    (["DATA_LOADER.NUM_WORKERS", "-1"], "DATA_LOADER.NUM_WORKERS"),
    (["BENCHMARK.TARGET_TOP1", "101"], "BENCHMARK.TARGET_TOP1"),
    (["BENCHMARK.DIVISION", "half"], "BENCHMARK.DIVISION"),  # closed or open
    (["DATA.TRAIN_JITTER_SCALES", "[40, 32]"], "DATA.TRAIN_JITTER_SCALES"),
    (["DATA.TRAIN_JITTER_SCALES", "[200, 256]"], "DATA.TRAIN_CROP_SIZE"),  # a crop larger than the scaled frame
    (["TRAIN.EVAL_PERIOD", "0"], "TRAIN.EVAL_PERIOD"),
    (["SOLVER.COSINE_AFTER_WARMUP", "True", "SOLVER.WARMUP_EPOCHS", "3", "SOLVER.MAX_EPOCH", "3"],
     "SOLVER.WARMUP_EPOCHS"),  # a cosine over zero epochs: 0/0
])
def test_impossible_values_rejected(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, overrides)


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert str(missing) in str(info.value)


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "TRAIN:\n  BATCH_SIZE: 8\n  EVAL_PERIOD: [1\nSOLVER:\n  BASE_LR: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}:")
    line = int(message[len(str(path)) + 1:].split(":", 1)[0])
    assert 3 <= line <= 5
    assert "\n" not in message


def test_yaml_not_a_mapping(tmp_path):
    path = write(tmp_path, "- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_empty_yaml_is_defaults(tmp_path):
    assert flat_items(load_config(write(tmp_path, ""))) == flat_items(get_defaults())


def test_odd_number_of_overrides():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["TRAIN.BATCH_SIZE", "8", "SOLVER.BASE_LR"])
    assert "SOLVER.BASE_LR" in str(info.value)


def test_config_is_frozen():
    cfg = load_config(None)
    with pytest.raises(AttributeError):
        cfg.SOLVER.BASE_LR = 1.0
    with pytest.raises(AttributeError):
        cfg.NEW_KEY = 1
    assert cfg.SOLVER.BASE_LR == 0.1


def test_config_errors_are_vmb_errors():
    assert issubclass(ConfigError, VMBError)


def test_config_digest_stable_and_sensitive():
    a = load_config(None, ["SOLVER.BASE_LR", "0.2"])
    b = load_config(None, ["SOLVER.BASE_LR", "0.2"])
    c = load_config(None, ["SOLVER.BASE_LR", "0.3"])
    assert config_digest(a) == config_digest(b)
    assert len(config_digest(a)) == 64
    assert config_digest(a) != config_digest(c)
    # The same value typed as int or float resolves to the same config.
    assert config_digest(load_config(None, ["SOLVER.BASE_LR", "1"])) == \
        config_digest(load_config(None, ["SOLVER.BASE_LR", "1.0"]))


def test_fixed_digest_ignores_resource_keys():
    base = load_config(None)
    resources = load_config(None, ["DATA_LOADER.NUM_WORKERS", "0", "OUTPUT_DIR", "elsewhere", "RNG_SEED", "7",
                                   "NUM_GPUS", "8", "TEST.BATCH_SIZE", "32"])
    assert config_digest(base) != config_digest(resources)
    assert config_digest(base, exclude=rules.RESOURCE_KEYS) == config_digest(resources, exclude=rules.RESOURCE_KEYS)
    recipe = load_config(None, ["SOLVER.MAX_EPOCH", "10"])
    assert config_digest(base, exclude=rules.RESOURCE_KEYS) != config_digest(recipe, exclude=rules.RESOURCE_KEYS)


def test_resource_keys_exist():
    flat = flat_items(get_defaults())
    assert rules.RESOURCE_KEYS <= set(flat), sorted(rules.RESOURCE_KEYS - set(flat))


def test_dumped_config_round_trips():
    cfg = load_config(None, ["SOLVER.BASE_LR", "0.05", "DATA.TRAIN_JITTER_SCALES", "[240, 300]"])
    again = config_from_yaml_text(cfg.dump(), "config.yaml")
    assert flat_items(again) == flat_items(cfg)
    assert config_digest(again) == config_digest(cfg)


def test_config_from_yaml_text_rejects_unknown_key():
    with pytest.raises(ConfigError, match="run/config.yaml"):
        config_from_yaml_text("NOT_A_KEY: 1\n", "run/config.yaml")


def test_repo_has_configs():
    assert (REPO_ROOT / "configs" / "smoke" / "X3D.yaml") in CONFIG_FILES


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_repo_config_loads(path):
    cfg = load_config(path)
    if path.parent.name == "dryrun":  # never scorable: tests/test_dryrun.py checks them against the canonical ones
        assert cfg.BENCHMARK.NAME.startswith("dryrun_") and cfg.BENCHMARK.NAME not in rules.BENCHMARKS
        return
    if path.name in KINETICS_TARGETS:
        assert cfg.BENCHMARK.TARGET_TOP1 == pytest.approx(KINETICS_TARGETS[path.name])
        assert cfg.MODEL.NUM_CLASSES == 20
    if cfg.BENCHMARK.NAME:
        assert cfg.BENCHMARK.NAME in rules.BENCHMARKS, cfg.BENCHMARK.NAME
        assert rules.BENCHMARKS[cfg.BENCHMARK.NAME].config.resolve() == path.resolve()


@pytest.mark.parametrize("name", sorted(rules.BENCHMARKS))
def test_benchmark_registry_configs_exist_and_name_themselves(name):
    bench = rules.BENCHMARKS[name]
    assert bench.config.is_file(), bench.config
    cfg = load_config(bench.config)
    assert cfg.BENCHMARK.NAME == name
    assert cfg.MODEL.ARCH == ("x3d" if bench.model_class == "cnn" else "mvit")
    assert cfg.BENCHMARK.TARGET_TOP1 > 0


def test_num_workers_is_auto_or_an_integer(tmp_path):
    assert load_config(None).DATA_LOADER.NUM_WORKERS == "auto"
    assert load_config(None, ["DATA_LOADER.NUM_WORKERS", "8"]).DATA_LOADER.NUM_WORKERS == 8
    assert load_config(None, ["DATA_LOADER.NUM_WORKERS", "auto"]).DATA_LOADER.NUM_WORKERS == "auto"
    assert load_config(write(tmp_path, "DATA_LOADER:\n  NUM_WORKERS: 3\n")).DATA_LOADER.NUM_WORKERS == 3
    cfg = load_config(write(tmp_path, "DATA_LOADER:\n  NUM_WORKERS: auto\n", "auto.yaml"))
    assert config_from_yaml_text(cfg.dump(), "config.yaml").DATA_LOADER.NUM_WORKERS == "auto"
    for text in ("many", "2.5", "True", "[2]"):
        with pytest.raises(ConfigError, match=r"DATA_LOADER\.NUM_WORKERS must be an integer or auto"):
            load_config(None, ["DATA_LOADER.NUM_WORKERS", text])
    with pytest.raises(ConfigError, match=r"DATA_LOADER\.NUM_WORKERS must be an integer or auto"):
        load_config(write(tmp_path, "DATA_LOADER:\n  NUM_WORKERS: 1.5\n", "float.yaml"))
    with pytest.raises(ConfigError, match=r"DATA_LOADER\.NUM_WORKERS must be auto or an integer >= 0; got -2"):
        load_config(None, ["DATA_LOADER.NUM_WORKERS", "-2"])


def test_decoding_backend_is_a_validated_resource_key():
    assert load_config(None).DATA.DECODING_BACKEND == "pyav"
    for backend in ("pyav", "torchcodec", "torchcodec_cuda", "dali"):
        assert load_config(None, ["DATA.DECODING_BACKEND", backend]).DATA.DECODING_BACKEND == backend
    with pytest.raises(ConfigError) as info:
        load_config(None, ["DATA.DECODING_BACKEND", "ffmpeg"])
    assert "DATA.DECODING_BACKEND" in str(info.value) and "torchcodec_cuda" in str(info.value)
    assert "DATA.DECODING_BACKEND" in rules.RESOURCE_KEYS


def test_fingerprint_is_empty_or_a_manifest_fingerprint():
    fingerprint = "sha256:" + "0123456789abcdef" * 4
    assert load_config(None).DATA.FINGERPRINT == ""
    assert load_config(None, ["DATA.FINGERPRINT", fingerprint]).DATA.FINGERPRINT == fingerprint
    for bad in ("0123", fingerprint.upper(), "unprepared:" + fingerprint, fingerprint + "0"):
        with pytest.raises(ConfigError, match=r"DATA\.FINGERPRINT must be empty or a manifest fingerprint"):
            load_config(None, ["DATA.FINGERPRINT", bad])
    # The canonical config fixes the dataset: a submitter cannot change it.
    assert "DATA.FINGERPRINT" not in rules.RESOURCE_KEYS
    base = load_config(None)
    other = load_config(None, ["DATA.FINGERPRINT", fingerprint])
    assert config_digest(base, exclude=rules.RESOURCE_KEYS) != config_digest(other, exclude=rules.RESOURCE_KEYS)


def test_base_is_read_first_and_the_file_overrides_it(tmp_path):
    write(tmp_path, "SOLVER:\n  BASE_LR: 0.5\n  MAX_EPOCH: 7\nMODEL:\n  ARCH: mvit\n"
          "MVIT:\n  DIM_MUL: [[1, 2.0], [3, 2.0], [14, 2.0]]\n", "base.yaml")
    (tmp_path / "sub").mkdir()
    path = write(tmp_path, "_BASE_: ../base.yaml\nSOLVER:\n  MAX_EPOCH: 9\nMVIT:\n  DIM_MUL: [[2, 3.0]]\n",
                 "sub/child.yaml")
    cfg = load_config(path, ["SOLVER.BASE_LR", "0.25"])
    assert cfg.SOLVER.MAX_EPOCH == 9  # the file's value
    assert cfg.MODEL.ARCH == "mvit"  # the base's, in a section the file does not mention
    assert cfg.MVIT.DIM_MUL == [[2, 3.0]]  # a list replaces the base's, it is not merged
    assert cfg.SOLVER.BASE_LR == 0.25  # overrides still win
    assert cfg.SOLVER.WEIGHT_DECAY == get_defaults().SOLVER.WEIGHT_DECAY


def test_bases_chain_and_may_be_absolute(tmp_path):
    write(tmp_path, "SOLVER:\n  MAX_EPOCH: 3\n  BASE_LR: 0.3\n", "a.yaml")
    write(tmp_path, "_BASE_: a.yaml\nSOLVER:\n  MAX_EPOCH: 4\n", "b.yaml")
    path = write(tmp_path, f"_BASE_: {tmp_path / 'b.yaml'}\nTRAIN:\n  BATCH_SIZE: 8\n", "c.yaml")
    cfg = load_config(path)
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_EPOCH, cfg.TRAIN.BATCH_SIZE) == (0.3, 4, 8)


def chain(tmp_path: pathlib.Path, files: int) -> pathlib.Path:
    """f0.yaml <- f1.yaml <- ... <- f{files - 1}.yaml, each the base of the next; returns the last."""
    write(tmp_path, "SOLVER:\n  MAX_EPOCH: 1\n", "f0.yaml")
    for i in range(1, files):
        write(tmp_path, f"_BASE_: f{i - 1}.yaml\n", f"f{i}.yaml")
    return tmp_path / f"f{files - 1}.yaml"


def test_base_depth_is_limited(tmp_path):
    assert load_config(chain(tmp_path, 6)).SOLVER.MAX_EPOCH == 1  # five bases
    with pytest.raises(ConfigError, match="more than 5 bases deep") as info:
        load_config(chain(tmp_path, 7))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("files,match", [
    ({"a.yaml": "_BASE_: nope.yaml\n"}, r"a\.yaml: _BASE_ nope\.yaml not found"),
    ({"a.yaml": "_BASE_: a.yaml\n"}, r"a\.yaml: _BASE_ a\.yaml makes a cycle"),
    ({"a.yaml": "_BASE_: b.yaml\n", "b.yaml": "_BASE_: a.yaml\n"}, r"b\.yaml: _BASE_ a\.yaml makes a cycle"),
    ({"a.yaml": "_BASE_: [b.yaml]\n"}, r"a\.yaml: _BASE_ must be the path of a YAML file"),
    ({"a.yaml": "_BASE_: b.yaml\n", "b.yaml": "TRAIN:\n  BATCH_SIZ: 8\n"}, r"b\.yaml: unknown config key TRAIN"),
    ({"a.yaml": "TRAIN:\n  _BASE_: b.yaml\n"}, r"unknown config key TRAIN\._BASE_"),
])
def test_bad_bases_are_one_line_errors(tmp_path, files, match):
    for name, text in files.items():
        write(tmp_path, text, name)
    with pytest.raises(ConfigError, match=match) as info:
        load_config(tmp_path / "a.yaml")
    assert "\n" not in str(info.value)


def test_dryrun_bases_resolve_wherever_the_configs_folder_is(tmp_path):
    """Installed, the configs are vmb/configs/: a relative _BASE_ follows the folder."""
    shutil.copytree(REPO_ROOT / "configs", tmp_path / "vmb" / "configs")
    for path in sorted((REPO_ROOT / "configs" / "dryrun").glob("*.yaml")):
        moved = tmp_path / "vmb" / "configs" / "dryrun" / path.name
        assert config_digest(load_config(moved)) == config_digest(load_config(path))
