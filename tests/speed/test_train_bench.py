"""The training-speed tool (tools/bench_train.py): statistics, warm-up exclusion, tiny runs of the CLI on real
data and on a stubbed zoo model, and its answers to bad input, out of memory and an interrupt."""
from __future__ import annotations

import json
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vmb.speed import train_bench
from vmb.cli.bench_train import main
from vmb.speed.train_bench import IterTimes, measure, time_iterations
from vmb.speed.train_report import seconds_stats

CPU = torch.device("cpu")


def test_statistics_of_known_samples():
    stats = seconds_stats([float(v) for v in range(1, 101)])
    assert stats == pytest.approx({"mean": 50.5, "p50": 50.5, "p95": 95.05, "min": 1.0, "max": 100.0})
    samples = np.random.default_rng(0).exponential(size=37).tolist()
    stats = seconds_stats(samples)
    assert stats["p50"] == pytest.approx(np.percentile(samples, 50))
    assert stats["p95"] == pytest.approx(np.percentile(samples, 95))
    assert seconds_stats([0.25]) == pytest.approx({"mean": 0.25, "p50": 0.25, "p95": 0.25, "min": 0.25, "max": 0.25})


def sleepy_batches(seconds: float):
    """Batches 0, 1, 2, ..., each ready after `seconds`."""
    index = 0
    while True:
        time.sleep(seconds)
        yield index
        index += 1


def test_warmup_iterations_are_not_timed():
    durations = [0.2, 0.2, 0.2, 0.02, 0.03, 0.02, 0.03]  # the first three are the warm-up
    stepped = []

    def step(batch: int) -> None:
        stepped.append(batch)
        time.sleep(durations[batch])

    times = IterTimes()
    measure(sleepy_batches(0.03), step, iters=7, warmup=3, device=CPU, into=times)
    assert stepped == list(range(7)) and times.count() == 4
    for compute, slept in zip(times.compute, durations[3:]):  # in order, and none of the 0.2 s warm-up steps
        assert slept <= compute < slept + 0.05
    assert all(d >= 0.03 for d in times.data)
    for data, compute, total in zip(times.data, times.compute, times.total):
        assert total == pytest.approx(data + compute, abs=5e-3)


def test_an_interrupted_run_keeps_its_finished_iterations():
    def step(batch: int) -> None:
        if batch == 2:
            raise KeyboardInterrupt

    times = IterTimes()
    with pytest.raises(KeyboardInterrupt):
        time_iterations(sleepy_batches(0.0), step, 5, CPU, times)
    assert times.count() == 2 and len(times.data) == 3


class TinyNet(torch.nn.Module):
    """A clip classifier small enough to train in milliseconds; `pathways` 2 takes [slow, fast] as SlowFast."""

    def __init__(self, num_classes: int, pathways: int) -> None:
        super().__init__()
        self.convs = torch.nn.ModuleList(torch.nn.Conv3d(3, 4, 3, padding=1) for _ in range(pathways))
        self.head = torch.nn.Linear(4 * pathways, num_classes)

    def forward(self, x):
        paths = x if isinstance(x, list) else [x]
        return self.head(torch.cat([conv(p).mean(dim=(2, 3, 4)) for conv, p in zip(self.convs, paths)], dim=1))


def tiny_zoo_model(name: str, arch: str):
    """A stand-in for vmb.models.zoo.ZooModel with the same interface."""
    frames, crop = 4, 16

    def example_input(batch_size, device="cpu", dtype=torch.float32):
        clips = torch.randn(batch_size, 3, frames, crop, crop, device=device, dtype=dtype)
        return [clips[:, :, ::2].contiguous(), clips] if arch == "slowfast" else clips

    return SimpleNamespace(name=name, arch=arch, num_frames=frames, crop_size=crop, published_params_m=0.0,
                           build=lambda num_classes=400: TinyNet(num_classes, 2 if arch == "slowfast" else 1),
                           example_input=example_input)


@pytest.fixture
def tiny_zoo(monkeypatch):
    monkeypatch.setattr(train_bench, "get_zoo_model", lambda name: tiny_zoo_model(name, name.split("_")[0]))


def check_result(result: dict, iters: int, warmup: int, batch: int) -> None:
    """What every finished run reports: the split adds up, clips/s is the batch over s/iter, a positive ratio."""
    n = iters - warmup
    assert result["status"] == "ok" and result["measured_iters"] == n and result["batch_size"] == batch
    assert all(len(v) == n for v in result["per_iteration"].values())
    s_iter, data, compute = result["s_iter"], result["data_s"], result["compute_s"]
    assert s_iter["mean"] == pytest.approx(data["mean"] + compute["mean"], rel=0.05, abs=5e-3)
    assert s_iter["min"] <= s_iter["p50"] <= s_iter["p95"] <= s_iter["max"]
    assert result["clips_per_s"] == pytest.approx(batch / s_iter["mean"])
    assert result["peak_memory_mib"] > 0 and "RSS" in result["peak_memory"]
    # GPU figures are None on the CPU: not measured, never 0.
    assert result["gpu_utilization_pct"] is None and result["host_syncs_per_step"] is None
    overhead = result["overhead"]
    assert overhead["ratio"] > 0 and overhead["rounds"] == 2 and len(overhead["round_ratios"]) == 2
    assert overhead["ratio_min"] <= overhead["ratio"] <= overhead["ratio_max"]


def test_real_data_run_of_a_config(tiny_videos_dir, tiny_train_args, smoke_config, tmp_path, capsys):
    out = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    status = main(["--cfg", str(smoke_config), "--device", "cpu", "--iters", "6", "--warmup", "2", "--rounds", "2",
                   "--round-steps", "1", "--json", str(out), *tiny_train_args(tiny_videos_dir, tmp_path / "run")])
    assert status == 0 and torch.get_num_threads() == threads
    result = json.loads(out.read_text())
    check_result(result, iters=6, warmup=2, batch=4)
    assert result["input"] == "real" and result["precision"] == "fp32" and result["clip"] == [4, 32, 32]
    assert result["model"] == "smoke_x3d" and result["device"] == "cpu"
    printed = capsys.readouterr().out
    assert "clips/s" in printed and "VMB step / bare loop" in printed and "first 2 left out, 4 measured" in printed


def test_a_config_runs_as_one_of_its_processes_with_its_recipe(tiny_videos_dir, tiny_train_args, smoke_config,
                                                               tmp_path):
    out = tmp_path / "bench.json"
    recipe = ["AUG.ENABLE", "True", "AUG.RE_PROB", "0.5", "MIXUP.ENABLE", "True", "SOLVER.CLIP_GRAD_L2NORM", "1.0"]
    status = main(["--cfg", str(smoke_config), "--synthetic", "--device", "cpu", "--batch-size", "3", "--iters", "4",
                   "--warmup", "1", "--rounds", "2", "--round-steps", "1", "--json", str(out),
                   *tiny_train_args(tiny_videos_dir, tmp_path / "run", "NUM_GPUS", "2", *recipe)])
    assert status == 0
    result = json.loads(out.read_text())
    check_result(result, iters=4, warmup=1, batch=3)
    assert (result["global_batch_size"], result["processes"], result["input"]) == (6, 2, "synthetic")


@pytest.mark.parametrize("model, precision", [("x3d_tiny", "fp32"), ("slowfast_tiny", "bf16")])
def test_synthetic_run_of_a_zoo_model(model, precision, tiny_zoo, tmp_path):
    out = tmp_path / "bench.json"
    status = main(["--model", model, "--synthetic", "--batch-size", "2", "--precision", precision, "--device", "cpu",
                   "--iters", "5", "--warmup", "2", "--rounds", "2", "--round-steps", "2", "--json", str(out)])
    assert status == 0
    result = json.loads(out.read_text())
    check_result(result, iters=5, warmup=2, batch=2)
    assert result["input"] == "synthetic" and result["precision"] == precision and result["model"] == model
    assert result["data_s"]["p50"] < 1e-3  # the batch is on the device already


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("argv, words", [
    (["--model", "no_such_model"], ("no_such_model", "x3d_m", "mvit_b_16x4")),
    (["--cfg", "configs/smoke/X3D.yaml", "--model", "x3d_m"], ("exactly one of --cfg",)),
    ([], ("exactly one of --cfg",)),
    (["--model", "x3d_m", "--iters", "50", "--warmup", "50"], ("--iters 50 must exceed --warmup 50",)),
    (["--model", "x3d_m", "--device", "cpu", "--precision", "fp16"], ("fp16 needs a CUDA device",)),
])
def test_bad_input_is_one_line_and_exit_2(argv, words, capsys):
    assert main(argv) == 2
    line = error_line(capsys)
    assert line.startswith("error: ") and all(w in line for w in words), line


def stop_at_call(monkeypatch, calls: int, exc: BaseException) -> None:
    """Make VMB's step raise `exc` at its `calls`-th call."""
    step, count = train_bench.vmb_step, [0]

    def failing(trainer, batch):
        count[0] += 1
        if count[0] == calls:
            raise exc
        step(trainer, batch)

    monkeypatch.setattr(train_bench, "vmb_step", failing)


def test_out_of_memory_is_the_result(tiny_zoo, monkeypatch, tmp_path, capsys):
    stop_at_call(monkeypatch, 1, torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    out = tmp_path / "bench.json"
    status = main(["--model", "x3d_tiny", "--batch-size", "3", "--device", "cpu", "--iters", "4", "--warmup", "1",
                   "--json", str(out)])
    assert status == 1
    result = json.loads(out.read_text())
    assert result["status"].startswith("out of memory at batch size 3") and result["measured_iters"] == 0
    assert result["s_iter"] is None and result["overhead"] is None
    assert "status: out of memory at batch size 3" in capsys.readouterr().out


def test_interrupt_reports_what_was_measured(tiny_zoo, monkeypatch, tmp_path, capsys):
    stop_at_call(monkeypatch, 4, KeyboardInterrupt())  # warm-up 1, then 2 timed iterations finish
    out = tmp_path / "bench.json"
    status = main(["--model", "x3d_tiny", "--batch-size", "2", "--device", "cpu", "--iters", "10", "--warmup", "1",
                   "--json", str(out)])
    assert status == 130
    result = json.loads(out.read_text())
    assert result["status"].startswith("interrupted") and result["measured_iters"] == 2
    assert result["s_iter"]["mean"] > 0 and result["overhead"] is None
    assert "2 measured" in capsys.readouterr().out
