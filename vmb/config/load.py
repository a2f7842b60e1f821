"""Build the resolved config: defaults, then a YAML file, then `KEY VALUE` overrides; validate; freeze.

A YAML file may start from another one with `_BASE_: path.yaml` (relative to the file itself, or absolute): the
base is read first (it may have a base of its own, up to MAX_BASE_DEPTH), then the file's keys replace the
base's, key by key (a list replaces the base's list whole).

Every mistake a user can make here (missing file, unknown key, wrong type, bad value, a missing or circular
base) is reported as a one-line `ConfigError` naming the file or key, with the nearest valid key for a typo.
A key set to a non-default value that the rest of the config makes the code ignore (IGNORED) is reported once
per process and key, as one "warning: config: ..." line on stderr.
"""
from __future__ import annotations

import ast
import difflib
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import yaml
from fvcore.common.config import CfgNode

from vmb.config.defaults_data import add_data_defaults
from vmb.config.defaults_model import ARCHITECTURES, add_model_defaults
from vmb.config.defaults_run import AMP_DTYPES, add_run_defaults
from vmb.config.defaults_solver import add_solver_defaults
from vmb.backends import BACKENDS
from vmb.errors import ConfigError
from vmb.rules import DIVISIONS

_CHOICES = {
    "MODEL.ARCH": ARCHITECTURES,
    "SOLVER.OPTIMIZING_METHOD": ("sgd", "adamw"),
    "SOLVER.LR_POLICY": ("cosine",),
    "MVIT.MODE": ("conv", "max", "avg"),
    "TRAIN.AMP_DTYPE": tuple(AMP_DTYPES),
    "DATA.DECODING_BACKEND": tuple(BACKENDS),
}
# Keys that take an integer or the word "auto" (resolved when the run starts; see vmb.data.loader).
_INT_OR_AUTO = frozenset({"DATA_LOADER.NUM_WORKERS"})
BASE_KEY = "_BASE_"  # a YAML file's key naming the file it starts from
MAX_BASE_DEPTH = 5  # at most this many bases below the file passed to load_config (a base's base counts)


def get_defaults() -> CfgNode:
    """A new, mutable config holding every key with its default value."""
    cfg = CfgNode()
    add_run_defaults(cfg)
    add_data_defaults(cfg)
    add_model_defaults(cfg)
    add_solver_defaults(cfg)
    return cfg


class Ignored(NamedTuple):
    """`keys` have no effect on a config for which `applies` holds; `when` says when, in words."""

    keys: tuple[str, ...]
    applies: Callable[[CfgNode], bool]
    when: str


def _section_keys(section: str) -> tuple[str, ...]:
    return tuple(f"{section}.{key}" for key in get_defaults()[section])


# Keys the code ignores in a combination of other keys' values (read where each key is used: vmb/engine/optim.py,
# mixup.py, precision.py, vmb/data/loader.py, vmb/models/build.py, vmb/engine/train.py). load_config warns about
# each one set to a non-default value; docs/CONFIG.md lists them. DATA_LOADER.* are left out: whether a machine
# pins memory or has workers is decided at run time (the device, NUM_WORKERS "auto"), not by the config alone.
IGNORED = (
    Ignored(("SOLVER.MOMENTUM", "SOLVER.NESTEROV"), lambda cfg: cfg.SOLVER.OPTIMIZING_METHOD != "sgd",
            "SOLVER.OPTIMIZING_METHOD is not sgd (only SGD takes momentum)"),
    Ignored(("SOLVER.WARMUP_START_LR", "SOLVER.COSINE_AFTER_WARMUP"), lambda cfg: cfg.SOLVER.WARMUP_EPOCHS == 0,
            "SOLVER.WARMUP_EPOCHS is 0 (no warm-up)"),
    Ignored(("BN.WEIGHT_DECAY",), lambda cfg: cfg.SOLVER.ZERO_WD_1D_PARAM,
            "SOLVER.ZERO_WD_1D_PARAM is True (BatchNorm parameters get no weight decay)"),
    Ignored(("TRAIN.AMP_DTYPE",), lambda cfg: not cfg.TRAIN.MIXED_PRECISION, "TRAIN.MIXED_PRECISION is False"),
    Ignored(("MIXUP.ALPHA", "MIXUP.CUTMIX_ALPHA", "MIXUP.LABEL_SMOOTH_VALUE"), lambda cfg: not cfg.MIXUP.ENABLE,
            "MIXUP.ENABLE is False"),
    Ignored(("AUG.RAND_NUM_OPS", "AUG.RAND_MAGNITUDE", "AUG.RAND_MAGNITUDE_STD", "AUG.RE_PROB"),
            lambda cfg: not cfg.AUG.ENABLE, "AUG.ENABLE is False"),
    Ignored(("DATA.TRAIN_JITTER_SCALES",), lambda cfg: bool(cfg.DATA.TRAIN_JITTER_SCALES_RELATIVE),
            "DATA.TRAIN_JITTER_SCALES_RELATIVE is set (random-resized-crop instead of scale jitter)"),
    Ignored(("SYNTHETIC.TRAIN_PER_CLASS", "SYNTHETIC.VAL_PER_CLASS", "SYNTHETIC.SEED"),
            lambda cfg: not cfg.SYNTHETIC.ENABLE, "SYNTHETIC.ENABLE is False"),
    Ignored(_section_keys("X3D"), lambda cfg: cfg.MODEL.ARCH != "x3d",
            "MODEL.ARCH is not x3d"),
    Ignored(_section_keys("MVIT"), lambda cfg: cfg.MODEL.ARCH != "mvit", "MODEL.ARCH is not mvit"),
)
_warned: set[str] = set()  # keys warned about in this process


def warn_ignored(cfg: CfgNode) -> None:
    """One "warning: config: ..." line on stderr per key of IGNORED that `cfg` sets to a non-default value while
    the code ignores it, once per process and key."""
    flat, defaults = _flatten(cfg), _flatten(get_defaults())
    for rule in IGNORED:
        if not rule.applies(cfg):
            continue
        for key in rule.keys:
            if flat[key] != defaults[key] and key not in _warned:
                _warned.add(key)
                print(f"warning: config: {key} {flat[key]} is ignored: {rule.when}", file=sys.stderr)


def _flatten(node: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in node.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, full + "."))
        else:
            flat[full] = value
    return flat


def _coerce_int_or_auto(key: str, value: Any, source: str) -> int | str:
    """`value` as an int, or the string "auto"; digits typed on the command line become an int."""
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
        return int(value)
    raise ConfigError(f"{source}: {key} must be an integer or auto, got {value!r}")


def _coerce(key: str, value: Any, default: Any, source: str) -> Any:
    """Return `value` converted to the type of `default`, or raise a one-line ConfigError."""
    if key in _INT_OR_AUTO:
        return _coerce_int_or_auto(key, value, source)
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads exponents without a dot ("5e-5") as strings
            try:
                return float(value)
            except ValueError:
                pass
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return list(value)
    raise ConfigError(
        f"{source}: {key} must be a {type(default).__name__} (default {default!r}), got {value!r}"
    )


def _set(cfg: CfgNode, flat_defaults: dict[str, Any], key: str, value: Any, source: str) -> None:
    if key not in flat_defaults:
        close = difflib.get_close_matches(key, flat_defaults.keys(), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]}?" if close else "; see vmb/config/defaults_*.py for valid keys"
        raise ConfigError(f"{source}: unknown config key {key}{hint}")
    node = cfg
    *parents, leaf = key.split(".")
    for name in parents:
        node = node[name]
    node[leaf] = _coerce(key, value, flat_defaults[key], source)


def _parse_override(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (pass an existing YAML file to --cfg)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of KEY: value, got {type(data).__name__}")
    return data


def _read_with_bases(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, tuple[Any, str]]:
    """{KEY: (value, the file that set it)} of the YAML file `path` over its `_BASE_` chain: the base's keys,
    then the file's own in their place. `chain`: the (resolved) files above this one, the first the file passed
    to load_config, each taking the next as its base."""
    data = _read_yaml(path)
    items: dict[str, tuple[Any, str]] = {}
    if BASE_KEY in data:
        base = data.pop(BASE_KEY)
        if not isinstance(base, str) or not base:
            raise ConfigError(f"{path}: {BASE_KEY} must be the path of a YAML file (relative to {path.parent}), "
                              f"got {base!r}")
        base_path = path.parent / base  # an absolute `base` stays as it is
        here = (*chain, path.resolve())
        if base_path.resolve() in here:
            cycle = " -> ".join(str(p) for p in (*here, base_path.resolve()))
            raise ConfigError(f"{path}: {BASE_KEY} {base} makes a cycle: {cycle}")
        if len(here) > MAX_BASE_DEPTH:
            raise ConfigError(f"{path}: {BASE_KEY} {base} is more than {MAX_BASE_DEPTH} bases deep below "
                              f"{here[0]}")
        if not base_path.is_file():
            raise ConfigError(f"{path}: {BASE_KEY} {base} not found ({base_path} is not a file)")
        items = _read_with_bases(base_path, here)
    items.update((key, (value, str(path))) for key, value in _flatten(data).items())
    return items


def validate(cfg: CfgNode) -> None:
    """Check values that have the right type but an impossible value."""
    flat = _flatten(cfg)
    for key, choices in _CHOICES.items():
        if flat[key] not in choices:
            raise ConfigError(f"{key} must be one of {', '.join(choices)}; got {flat[key]!r}")
    for key in ("TRAIN.BATCH_SIZE", "TEST.BATCH_SIZE", "DATA.NUM_FRAMES", "DATA.SAMPLING_RATE",
                "DATA.TRAIN_CROP_SIZE", "DATA.TEST_CROP_SIZE", "MODEL.NUM_CLASSES", "SOLVER.MAX_EPOCH",
                "DATA.TARGET_FPS", "TRAIN.CHECKPOINT_PERIOD", "LOG_PERIOD", "TEST.NUM_ENSEMBLE_VIEWS"):
        if flat[key] <= 0:
            raise ConfigError(f"{key} must be positive; got {flat[key]}")
    if cfg.TEST.NUM_SPATIAL_CROPS not in (1, 3):
        raise ConfigError(f"TEST.NUM_SPATIAL_CROPS must be 1 (centre) or 3 (left, centre, right); "
                          f"got {cfg.TEST.NUM_SPATIAL_CROPS}")
    for key in ("NUM_GPUS", "SOLVER.WARMUP_EPOCHS", "DATA.NUM_RETRIES"):
        if flat[key] < 0:
            raise ConfigError(f"{key} must not be negative; got {flat[key]}")
    for key in _INT_OR_AUTO:
        if flat[key] != "auto" and flat[key] < 0:
            raise ConfigError(f"{key} must be auto or an integer >= 0; got {flat[key]}")
    if BACKENDS[cfg.DATA.DECODING_BACKEND].on_device and cfg.DATA_LOADER.NUM_WORKERS not in ("auto", 0):
        raise ConfigError(f"DATA.DECODING_BACKEND {cfg.DATA.DECODING_BACKEND} decodes on the GPU in a background "
                          "thread of each training process, not in data-loader workers: set DATA_LOADER.NUM_WORKERS "
                          f"0 (now {cfg.DATA_LOADER.NUM_WORKERS})")
    if cfg.DATA.FINGERPRINT and not re.fullmatch(r"sha256:[0-9a-f]{64}", cfg.DATA.FINGERPRINT):
        raise ConfigError(f"DATA.FINGERPRINT must be empty or a manifest fingerprint 'sha256:<64 hex digits>'; "
                          f"got {cfg.DATA.FINGERPRINT!r}")
    if cfg.SOLVER.COSINE_AFTER_WARMUP and cfg.SOLVER.WARMUP_EPOCHS == cfg.SOLVER.MAX_EPOCH:
        raise ConfigError(f"SOLVER.WARMUP_EPOCHS equals SOLVER.MAX_EPOCH ({cfg.SOLVER.MAX_EPOCH}) with "
                          "SOLVER.COSINE_AFTER_WARMUP: the cosine decay would last zero epochs; change one of them")
    if not 0 < cfg.TRAIN.EVAL_PERIOD:
        raise ConfigError(f"TRAIN.EVAL_PERIOD must be positive (epochs); got {cfg.TRAIN.EVAL_PERIOD}")
    if not 0.0 <= cfg.BENCHMARK.TARGET_TOP1 <= 100.0:
        raise ConfigError(f"BENCHMARK.TARGET_TOP1 is a percentage in [0, 100]; got {cfg.BENCHMARK.TARGET_TOP1}")
    if cfg.BENCHMARK.DIVISION not in DIVISIONS:
        raise ConfigError(f"BENCHMARK.DIVISION must be one of {', '.join(DIVISIONS)}; got {cfg.BENCHMARK.DIVISION!r}")
    scales = cfg.DATA.TRAIN_JITTER_SCALES
    if len(scales) != 2 or not 0 < scales[0] <= scales[1]:
        raise ConfigError(f"DATA.TRAIN_JITTER_SCALES must be [min, max] with 0 < min <= max; got {scales}")
    if not cfg.DATA.TRAIN_JITTER_SCALES_RELATIVE and scales[0] < cfg.DATA.TRAIN_CROP_SIZE:
        raise ConfigError(f"DATA.TRAIN_JITTER_SCALES {scales} must not be below DATA.TRAIN_CROP_SIZE "
                          f"{cfg.DATA.TRAIN_CROP_SIZE}")
    if bool(cfg.DATA.TRAIN_JITTER_SCALES_RELATIVE) != bool(cfg.DATA.TRAIN_JITTER_ASPECT_RELATIVE):
        raise ConfigError("DATA.TRAIN_JITTER_SCALES_RELATIVE and DATA.TRAIN_JITTER_ASPECT_RELATIVE must be set "
                          "together")
    if len(cfg.DATA.MEAN) != 3 or len(cfg.DATA.STD) != 3:
        raise ConfigError("DATA.MEAN and DATA.STD must have 3 values (RGB)")


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> CfgNode:
    """Defaults <- YAML file (over its `_BASE_` chain) <- `KEY VALUE` overrides, validated and frozen; a warning
    on stderr for each key set to a non-default value that the config makes the code ignore (`warn_ignored`).

    Args:
        path: a YAML config file, or None for the defaults alone.
        overrides: a flat list [KEY1, VALUE1, KEY2, VALUE2, ...] as typed on the command line.
    """
    cfg = get_defaults()
    flat_defaults = _flatten(cfg)
    if path is not None:
        for key, (value, source) in _read_with_bases(Path(path)).items():
            _set(cfg, flat_defaults, key, value, source)
    if len(overrides) % 2:
        raise ConfigError(f"overrides come in KEY VALUE pairs; {overrides[-1]!r} has no value")
    for key, text in zip(overrides[0::2], overrides[1::2]):
        # Text keys take the typed text as is: OUTPUT_DIR 123 is a folder name, not a number.
        value = text if isinstance(flat_defaults.get(key), str) else _parse_override(text)
        _set(cfg, flat_defaults, key, value, "command line")
    validate(cfg)
    warn_ignored(cfg)
    cfg.freeze()
    return cfg


def config_digest(cfg: CfgNode, exclude: frozenset[str] = frozenset()) -> str:
    """sha256 of the resolved config's keys and values (sorted JSON), leaving out the keys in `exclude`."""
    items = {k: v for k, v in _flatten(cfg).items() if k not in exclude}
    return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()


def flat_items(cfg: CfgNode) -> dict[str, Any]:
    """The config as {"SECTION.KEY": value}."""
    return _flatten(cfg)


def config_from_yaml_text(text: str, source: str, strict: bool = True) -> CfgNode:
    """A resolved config read back from a run folder (safe YAML only), frozen. `strict`: merged into this
    code's defaults, unknown keys are errors; otherwise (a run of another benchmark version) taken as it is."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"{source}: not valid YAML") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: not a config mapping")
    if not strict:
        cfg = CfgNode(data)
        cfg.freeze()
        return cfg
    cfg = get_defaults()
    flat_defaults = _flatten(cfg)
    for key, value in _flatten(data).items():
        _set(cfg, flat_defaults, key, value, source)
    cfg.freeze()
    return cfg


