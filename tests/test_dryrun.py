"""The dry-run configs (configs/dryrun/): the canonical benchmark configs on the synthetic Kinetics20-shaped
set, run to measure a machine, never scored.

A tiny kinetics-profile set (1 train / 1 val video per class, 0.3 s clips at the full 456x256) is written
with tools/make_synthetic.py's entry point, and a shrunken X3D dry run trains on it end to end on the CPU.
"""
from __future__ import annotations

import json
import pathlib

import pytest
import yaml

from vmb.cli import make_synthetic, run_net, score
from vmb import rules
from vmb.config import flat_items, load_config
from vmb.config.load import BASE_KEY
from vmb.data.prepare.manifest import read_manifest
from vmb.data.prepare.synthetic import PROFILE_DIRS

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DRYRUN = {"dryrun_x3d_m": REPO_ROOT / "configs/dryrun/X3D_M.yaml",
          "dryrun_mvit_b_16x4": REPO_ROOT / "configs/dryrun/MVIT_B_16x4.yaml"}
CANONICAL = {"dryrun_x3d_m": "x3d_m", "dryrun_mvit_b_16x4": "mvit_b_16x4"}
# The only keys a dry-run config may change.
DRYRUN_KEYS = {"BENCHMARK.NAME", "BENCHMARK.TARGET_TOP1", "DATA.PATH_TO_DATA_DIR", "OUTPUT_DIR", "SOLVER.MAX_EPOCH",
               "TRAIN.EVAL_PERIOD"}
# A tiny X3D, one epoch of 5 steps on 20 clips, one evaluation.
TINY_X3D = [
    "X3D.WIDTH_FACTOR", "0.5", "X3D.DEPTH_FACTOR", "0.5", "X3D.DIM_C5", "64", "X3D.DIM_C1", "8",
    "DATA.NUM_FRAMES", "4", "DATA.SAMPLING_RATE", "2", "DATA.TRAIN_JITTER_SCALES", "[32,40]",
    "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32", "TRAIN.BATCH_SIZE", "4", "TEST.BATCH_SIZE", "4",
    "DATA_LOADER.NUM_WORKERS", "0", "DATA_LOADER.PIN_MEMORY", "False", "NUM_GPUS", "0", "TENSORBOARD.ENABLE", "False",
    "SOLVER.MAX_EPOCH", "1", "TRAIN.EVAL_PERIOD", "1.0",
]


@pytest.fixture(scope="module")
def dryrun_data(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("data") / "dryrun"
    argv = ["--profile", "kinetics", "--out", str(out), "--train-per-class", "1", "--val-per-class", "1",
            "--seconds", "0.3", "--workers", "2"]
    assert make_synthetic.main(argv) == 0
    return out


@pytest.fixture(scope="module")
def dryrun_run(dryrun_data: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The run folder of a tiny X3D dry run (configs/dryrun/X3D_M.yaml shrunk by KEY VALUE overrides)."""
    out = tmp_path_factory.mktemp("runs") / "dryrun_x3d_m"
    argv = ["--cfg", str(DRYRUN["dryrun_x3d_m"]), *TINY_X3D, "DATA.PATH_TO_DATA_DIR", str(dryrun_data),
            "OUTPUT_DIR", str(out)]
    assert run_net.main(argv) == 1  # the target (100 %) is never reached: status aborted, exit status 1
    return out


def listed_keys(path: pathlib.Path) -> dict[str, bool]:
    """{KEY: whether it is marked "DRY RUN:"} for each key the YAML file itself sets (its _BASE_ aside): marked
    on its own line or in the comment lines right above it."""
    lines = path.read_text().splitlines()
    keys = {}

    def walk(node: yaml.MappingNode, prefix: str) -> None:
        for key_node, value_node in node.value:
            key = prefix + key_node.value
            if isinstance(value_node, yaml.MappingNode):
                walk(value_node, key + ".")
                continue
            row = key_node.start_mark.line
            above = row
            while above > 0 and lines[above - 1].lstrip().startswith("#"):
                above -= 1
            keys[key] = any("DRY RUN:" in line for line in lines[above:row + 1])

    walk(yaml.compose(path.read_text()), "")
    return keys


@pytest.mark.parametrize("name", DRYRUN)
def test_dryrun_config_is_the_canonical_one(name: str) -> None:
    """A dry-run config is its benchmark's canonical config (_BASE_) plus the keys it lists, each marked "DRY RUN:";
    the loaded configs differ in exactly those keys, and the name is no benchmark."""
    path = DRYRUN[name]
    base = yaml.safe_load(path.read_text())[BASE_KEY]
    assert (path.parent / base).resolve() == rules.BENCHMARKS[CANONICAL[name]].config.resolve()
    listed = listed_keys(path)
    del listed[BASE_KEY]
    assert [key for key, marked in listed.items() if not marked] == []
    cfg = load_config(path)
    canonical = load_config(rules.BENCHMARKS[CANONICAL[name]].config)
    have, want = flat_items(cfg), flat_items(canonical)
    assert have.keys() == want.keys()
    # A canonical config may pin Kinetics20's DATA.FINGERPRINT; a dry run accepts any data (the synthetic set's
    # bytes, hence its fingerprint, depend on the machine's x264): it would then list DATA.FINGERPRINT "".
    assert have.get("DATA.FINGERPRINT", "") == ""
    assert {key for key in have if have[key] != want[key]} == set(listed)
    assert set(listed) - {"DATA.FINGERPRINT"} == DRYRUN_KEYS
    assert cfg.BENCHMARK.NAME == name and name not in rules.BENCHMARKS
    assert cfg.BENCHMARK.TARGET_TOP1 == 100.0
    assert cfg.DATA.PATH_TO_DATA_DIR == PROFILE_DIRS["kinetics"] and cfg.OUTPUT_DIR == f"runs/{name}"
    assert cfg.SOLVER.MAX_EPOCH < canonical.SOLVER.MAX_EPOCH and not cfg.SYNTHETIC.ENABLE


def test_make_synthetic_kinetics_profile(dryrun_data: pathlib.Path, capsys: pytest.CaptureFixture) -> None:
    assert read_manifest(dryrun_data)["params"]["encoding"] == "prepared"
    assert len((dryrun_data / "train.csv").read_text().splitlines()) == 20
    # Asking again for the same set is a no-op; for another one without --force, a one-line error.
    capsys.readouterr()
    assert make_synthetic.main(["--profile", "kinetics", "--out", str(dryrun_data), "--seed", "1"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--force" in error


def test_dryrun_trains_end_to_end(dryrun_run: pathlib.Path) -> None:
    result = json.loads((dryrun_run / "result.json").read_text())
    assert result["benchmark"] == "dryrun_x3d_m" and result["target_top1"] == 100.0
    assert result["status"] == "aborted" and result["epochs"] == pytest.approx(1.0)
    assert [e["epoch"] for e in result["evals"]] == pytest.approx([1.0])
    assert result["device_type"] == "cpu" and result["decode_failures"] == 0
    assert result["dataset_fingerprint"].startswith("sha256:")


def test_score_rejects_a_dryrun(dryrun_run: pathlib.Path, capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    assert score.main([str(dryrun_run)]) == 1
    assert "unknown benchmark 'dryrun_x3d_m'" in capsys.readouterr().out
