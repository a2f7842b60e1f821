"""Multi-view testing of a checkpoint: score averaging, top-k counts, and tools/test_net.py on the tiny set, per
precision and per deployment runtime (ONNX Runtime fp32 and int8 side by side with eager PyTorch, an ONNX file of
another checkpoint, a calibration set too small, a runtime not installed)."""
from __future__ import annotations

import contextlib
import io
import json
import pathlib
import subprocess
import sys
from contextlib import nullcontext

import pytest
import torch

from vmb.engine.distributed import free_port
from vmb.config import load_config
from vmb.data.loader import build_loaders
from vmb.engine import train
from vmb.engine.checkpoint import save_checkpoint
from vmb.record.schema import CHECKPOINT_FILE
from vmb.engine.evaluate import evaluate
from vmb.cli.export import main as export_main
from vmb.cli.test_net import main
from vmb.engine.multiview import topk_correct, view_scores
from vmb.errors import ConfigError
from vmb.models.build import build_model

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
TEST_NET = REPO_ROOT / "tools" / "test_net.py"
VAL_SIZE = 7


def test_scores_are_softmax_averaged_over_views():
    # video 0: view 0 says class 0, view 1 says class 1 more softly -> class 0; video 1: both say class 2
    logits = torch.tensor([[[4.0, 0.0, 0.0], [0.0, 2.0, 0.0]],
                           [[0.0, 0.0, 3.0], [1.0, 0.0, 3.0]]])  # (N=2, V=2, K=3)
    scores = view_scores(logits)
    assert scores.shape == (2, 3)
    expected = (logits.softmax(-1)[:, 0] + logits.softmax(-1)[:, 1]) / 2
    assert torch.allclose(scores, expected)
    assert scores.argmax(1).tolist() == [0, 2]
    assert torch.allclose(scores.sum(1), torch.ones(2))


def test_topk_counts_and_clamps_k_to_the_classes():
    scores = torch.tensor([[0.5, 0.3, 0.2, 0.0],    # label 1: second -> top-5 (clamped to 4) only
                           [0.1, 0.2, 0.3, 0.4],    # label 3: first
                           [0.4, 0.3, 0.2, 0.1]])   # label 3: last -> top-4 still
    labels = torch.tensor([1, 3, 3])
    assert topk_correct(scores, labels).tolist() == [1, 3]
    assert topk_correct(scores, labels, ks=(1, 2, 3)).tolist() == [1, 2, 2]


def test_view_counts_are_config_keys():
    cfg = load_config(None, ["TEST.NUM_ENSEMBLE_VIEWS", "10", "TEST.NUM_SPATIAL_CROPS", "3"])
    assert (cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS) == (10, 3)
    assert (load_config(None).TEST.NUM_ENSEMBLE_VIEWS, load_config(None).TEST.NUM_SPATIAL_CROPS) == (1, 1)
    with pytest.raises(ConfigError, match="TEST.NUM_SPATIAL_CROPS must be 1 .* or 3"):
        load_config(None, ["TEST.NUM_SPATIAL_CROPS", "2"])
    with pytest.raises(ConfigError, match="TEST.NUM_ENSEMBLE_VIEWS must be positive"):
        load_config(None, ["TEST.NUM_ENSEMBLE_VIEWS", "0"])


@pytest.fixture(scope="module")
def trained(tiny_videos_dir, tmp_path_factory, smoke_config, tiny_train_args):
    """(config overrides, run folder) of a tiny X3D trained for one epoch: its checkpoint is in the folder."""
    out = tmp_path_factory.mktemp("multiview") / "run"
    args = tiny_train_args(tiny_videos_dir, out, "BENCHMARK.TARGET_TOP1", "100", "SOLVER.MAX_EPOCH", "1",
                           "TENSORBOARD.ENABLE", "False")
    train.run(load_config(smoke_config, args))
    assert (out / CHECKPOINT_FILE).is_file()
    return args, out


def test_cli_counts_every_video_once_per_precision(trained, smoke_config, tmp_path, capsys):
    args, out = trained
    report_file = tmp_path / "report.json"
    assert main(["--cfg", str(smoke_config), "--views", "2x3", "--precision", "fp32,bf16,fp16",
                 "--json", str(report_file), *args]) == 0
    table = capsys.readouterr().out
    report = json.loads(report_file.read_text())
    assert report["checkpoint"] == str(out / CHECKPOINT_FILE) and report["epoch"] == 1
    assert (report["videos"], report["clips"], report["crops"], report["views"]) == (VAL_SIZE, 2, 3, 6)
    assert [row["precision"] for row in report["results"]] == ["fp32", "bf16"]
    assert report["notes"] == ["fp16 skipped: fp16 needs a CUDA device"]
    for row in report["results"]:
        assert row["videos"] == VAL_SIZE
        assert row["top1"] == pytest.approx(100.0 * row["correct_top1"] / VAL_SIZE)
        assert row["correct_top5"] == VAL_SIZE  # 4 classes: top-5 is clamped to top-4, always right
        assert f"{row['top1']:.2f}" in table
    assert "fp16 skipped" in table


def test_one_view_is_the_runs_validation(trained, smoke_config, tmp_path):
    """1x1 testing of the checkpoint counts the same top-1 as validation (vmb.engine.evaluate) does."""
    args, out = trained
    report_file = tmp_path / "report.json"
    assert main(["--cfg", str(smoke_config), "--views", "1x1", "--json", str(report_file), *args]) == 0
    cfg = load_config(smoke_config, args)
    model = build_model(cfg)
    model.load_state_dict(torch.load(out / CHECKPOINT_FILE, weights_only=True)["model"])
    _, val_loader = build_loaders(cfg, 0, 1, torch.device("cpu"))
    correct, total = evaluate(model, val_loader, torch.device("cpu"), cfg.DATA.MEAN, cfg.DATA.STD, nullcontext())
    row = json.loads(report_file.read_text())["results"][0]
    assert (row["correct_top1"], row["videos"]) == (correct, total) == (row["correct_top1"], VAL_SIZE)


def test_checkpoint_of_another_architecture_is_one_line(trained, smoke_config, tmp_path, capsys):
    args, _ = trained
    mvit = build_model(load_config(smoke_config.with_name("MVIT.yaml"), ["MODEL.NUM_CLASSES", "4"]))
    path = tmp_path / CHECKPOINT_FILE
    save_checkpoint(path, {"model": mvit.state_dict(), "epoch": 3})
    assert main(["--cfg", str(smoke_config), "--checkpoint", str(path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"error: checkpoint {path} does not fit MODEL.ARCH x3d of {smoke_config} (missing ")
    assert "; unexpected " in err and err.endswith("use its config")


def test_checkpoint_of_another_size_names_a_reshaped_key(trained, smoke_config, tmp_path, capsys):
    args, _ = trained
    wider = build_model(load_config(smoke_config, [*args, "MODEL.NUM_CLASSES", "5"]))
    path = tmp_path / CHECKPOINT_FILE
    save_checkpoint(path, {"model": wider.state_dict()})
    assert main(["--cfg", str(smoke_config), "--checkpoint", str(path), *args]) == 2
    err = capsys.readouterr().err.strip()
    # the head's weight and bias
    assert "(2 of another shape, e.g. 'blocks.5.proj.weight' (5, 64) vs (4, 64))" in err, err


@pytest.mark.parametrize("content,message", [(None, "not found; pass a run's OUTPUT_DIR/checkpoint.pyth"),
                                             (b"\x80\x02truncated", "cannot load checkpoint")])
def test_missing_or_damaged_checkpoint_is_one_line(trained, smoke_config, tmp_path, capsys, content, message):
    args, _ = trained
    path = tmp_path / CHECKPOINT_FILE
    if content is not None:
        path.write_bytes(content)
    assert main(["--cfg", str(smoke_config), "--checkpoint", str(path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and str(path) in err


def test_bad_views_is_a_usage_error(smoke_config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--cfg", str(smoke_config), "--views", "10by3"])
    assert exit_info.value.code == 2
    assert "is not CLIPSxCROPS, e.g. 10x3" in capsys.readouterr().err



def test_two_processes_count_as_one(trained, smoke_config, tmp_path, child_env):
    args, _ = trained
    reports = {}
    for n in (1, 2):
        launcher = [] if n == 1 else ["-m", "torch.distributed.run", "--nproc_per_node", "2",
                                      "--master_addr", "127.0.0.1", "--master_port", str(free_port())]
        report_file = tmp_path / f"report{n}.json"
        proc = subprocess.run([sys.executable, *launcher, str(TEST_NET), "--cfg", str(smoke_config), "--views", "2x3",
                               "--json", str(report_file), *args], cwd=REPO_ROOT, env=child_env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.count("fp32 ") == 1  # only rank 0 prints the table
        reports[n] = json.loads(report_file.read_text())
    assert reports[2]["processes"] == 2
    strip = [{k: v for k, v in row.items() if k != "seconds"} for n in (1, 2) for row in reports[n]["results"]]
    assert strip[0] == strip[1] and strip[0]["videos"] == VAL_SIZE


@pytest.fixture(scope="module")
def deployed(trained, smoke_config, tmp_path_factory):
    """test_net --runtime torch,onnxruntime --precision fp32,int8 on the tiny checkpoint: (report, table)."""
    args, _ = trained
    report_file = tmp_path_factory.mktemp("deployed") / "report.json"
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["--cfg", str(smoke_config), "--views", "2x3", "--runtime", "torch,onnxruntime", "--precision",
                     "fp32,int8", "--calib-clips", "8", "--calib-seed", "1", "--json", str(report_file), *args]) == 0
    return json.loads(report_file.read_text()), out.getvalue()


def test_runtimes_and_precisions_count_every_video_on_the_same_clips(deployed):
    """ONNX Runtime fp32 counts exactly what eager fp32 counts: their logits agree to ~1e-6 (the export's check
    bounds them at 1e-3 of the logits' scale), far below the gaps between the tiny model's class scores, and the
    clips and their order are the same; a tie that close would change a count, on this fixed data it never does.
    int8 moves the logits by up to a few % and may change a count: its row is checked for exact counting only."""
    report, table = deployed
    rows = {(row["runtime"], row["precision"]): row for row in report["results"]}
    assert list(rows) == [("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")]
    assert report["notes"] == ["torch int8 skipped: int8 runs on onnxruntime (CPU) and tensorrt (CUDA), as a "
                               "quantized ONNX model"]
    eager, onnx_fp32, int8 = rows.values()
    assert {k: onnx_fp32[k] for k in ("correct_top1", "correct_top5", "videos")} == \
        {k: eager[k] for k in ("correct_top1", "correct_top5", "videos")}
    assert onnx_fp32["top1_change"] == eager["top1_change"] == 0.0
    assert int8["videos"] == VAL_SIZE and 0 <= int8["correct_top1"] <= VAL_SIZE
    assert int8["correct_top5"] == VAL_SIZE  # 4 classes: top-5 always right
    assert int8["top1_change"] == pytest.approx(int8["top1"] - eager["top1"])
    assert (report["model"], report["batch"], report["input"]) == ("smoke_x3d", 6, "3x4x32x32")
    deployment = report["deployment"]
    assert deployment["onnx"]["max_abs_diff"] <= deployment["onnx"]["bound"]
    assert deployment["int8-cpu"]["calibration"]["clips"] == 8 and deployment["int8-cpu"]["calibration"]["seed"] == 1
    assert deployment["int8-cpu"]["calibration"]["source"].startswith("train split of ")
    lines = table.splitlines()
    assert lines[2].split() == ["model", "batch", "input", "runtime", "precision", "top-1", "%", "top-5", "%", "chg",
                                "top-1", "chg", "top-5", "videos", "seconds"]
    assert lines[3].split()[:7] == ["smoke_x3d", "6", "3x4x32x32", "torch", "fp32", f"{eager['top1']:.2f}", "100.00"]
    assert lines[5].split()[3:8] == ["onnxruntime", "int8", f"{int8['top1']:.2f}", "100.00",
                                     f"{int8['top1_change']:+.2f}"]


def test_an_onnx_file_of_another_checkpoint_is_one_line(trained, smoke_config, tmp_path, capsys):
    args, out = trained
    other = tmp_path / CHECKPOINT_FILE
    save_checkpoint(other, {"model": build_model(load_config(smoke_config, args)).state_dict()})
    onnx_file = tmp_path / "other.onnx"
    assert export_main(["--cfg", str(smoke_config), "--checkpoint", str(other), "--out", str(onnx_file), *args]) == 0
    capsys.readouterr()
    assert main(["--cfg", str(smoke_config), "--runtime", "onnxruntime", "--onnx", str(onnx_file), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"error: {onnx_file} is an ONNX file of another model: its weights is 'checkpoint sha256:")
    assert err.endswith(f"export it with tools/export.py --cfg {smoke_config} --checkpoint {out / CHECKPOINT_FILE} "
                        "--out FILE")


@pytest.mark.parametrize("options, message", [
    (["--calib-clips", "4"], "--calib-clips 4: too few clips to calibrate int8; give at least 8"),
    (["--calib-clips", "17"], "--calib-clips 17: the train split ("),
])
def test_a_calibration_set_too_small_is_one_line(trained, smoke_config, capsys, options, message):
    args, _ = trained
    assert main(["--cfg", str(smoke_config), "--runtime", "onnxruntime", "--precision", "int8", *options, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and len(err.splitlines()) == 1


def test_onnx_needs_an_onnx_runtime(smoke_config, capsys):
    assert main(["--cfg", str(smoke_config), "--onnx", "model.onnx"]) == 2
    assert capsys.readouterr().err == ("error: --onnx model.onnx: only the onnxruntime and tensorrt runtimes run ONNX "
                                       "files; add --runtime onnxruntime\n")


def test_a_runtime_not_installed_is_a_note(trained, smoke_config, tmp_path, capsys):
    args, _ = trained
    report_file = tmp_path / "report.json"
    assert main(["--cfg", str(smoke_config), "--runtime", "torch,tensorrt", "--json", str(report_file), *args]) == 0
    report = json.loads(report_file.read_text())
    assert [(row["runtime"], row["precision"]) for row in report["results"]] == [("torch", "fp32")]
    assert report["notes"] == ["tensorrt fp32 skipped: tensorrt not installed (pip install -e .[deploy-gpu]); "
                               "tensorrt needs a CUDA device (this run is on the cpu)"]
    assert "note: tensorrt fp32 skipped: tensorrt not installed" in capsys.readouterr().out
