"""The system check (tools/system_check.py): the real command on this CPU machine; the budget (a cell past its timeout
is killed, later cells run); Ctrl-C; the driver verdict; the parsers; and every GPU cell run on the CPU against a
fake 2-GPU environment whose tools are stand-ins that check their command lines with the real tools' parsers."""
from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
import types
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from vmb.config import load_config
from vmb.data.prepare.synthetic import SPEC_FILE, profile_spec
from vmb.cli import system_check as system_check_cli
from vmb.speed import allreduce_bench, infer, train_bench
from vmb.speed.system_check import cells as check_cells
from vmb.speed.system_check import plan as check_plan
from vmb.speed.system_check.cells import CellContext, CellSpec, run_tool
from vmb.speed.system_check.environment import driver_verdict, probe_environment, proc_driver_version
from vmb.speed.system_check.figures import bench_figures, junit_summary
from vmb.speed.system_check.plan import G_DATA, MAX_TRAIN_PER_CLASS, MIN_CLIP_S, make_plan
from vmb.speed.system_check.process import REPO_ROOT, CellFailed, Finished
from vmb.speed.system_check.report import Report
from vmb.speed.system_check.runner import Runner, run_check
from vmb.speed.system_check.sizing import SIZING_FORMULA, cores_per_gpu
from vmb.speed.system_check.summaries import bench_summary

GPU_CELLS = ("cuda-tests", "dryrun-x3d_m-pyav", "dryrun-x3d_m-torchcodec_cuda", "dryrun-x3d_m-dali",
             "dryrun-mvit_b_16x4-pyav", "dryrun-mvit_b_16x4-torchcodec_cuda", "dryrun-mvit_b_16x4-dali",
             "train-x3d_m-fp32", "train-x3d_m-bf16", "train-mvit_b_16x4-fp32", "train-mvit_b_16x4-bf16", "inference",
             "nccl-allreduce", "dryrun-2gpu")
ENV_KEYS = ("cuda_available", "cuda_devices", "gpus", "driver_version", "driver_verdict", "cuda_runtime",
            "cuda_arch_list", "nccl_version", "bf16_native", "nvml_energy_readable", "cpu_model", "cpu_count",
            "usable_cores", "memory", "versions")


def cells_by_id(document: dict) -> dict[str, dict]:
    return {cell["id"]: cell for cell in document["cells"]}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU machine's report (a GPU machine runs the "
                                                      "GPU cells: run tools/system_check.py itself there)")
def test_the_command_on_this_cpu_machine(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(check_plan, "FRAME_CORE_S", 0.05)  # as on a slow machine: the smallest synthetic set
    out = tmp_path / "check"
    began = time.monotonic()
    assert system_check_cli.main(["--out", str(out), "--budget-min", "1"]) == 0
    assert time.monotonic() - began < 60
    document = json.loads((out / "system_check.json").read_text())
    assert document["version"] == 1 and document["budget_min"] == 1 and document["complete"]
    env = document["environment"]
    assert all(key in env for key in ENV_KEYS)
    assert env["cuda_devices"] == 0 and env["cuda_runtime"] == torch.version.cuda
    assert env["usable_cores"] == len(os.sched_getaffinity(0)) and env["versions"]["torch"] == torch.__version__
    cells = cells_by_id(document)
    assert {cells[i]["status"] for i in GPU_CELLS} == {"not run: no CUDA device"}
    assert {cells[i]["status"] for i in ("environment", "data", "per-core", "dryrun-cpu-smoke_x3d")} == {"ok"}
    data = cells["data"]["figures"]
    assert (data["train_videos"], data["val_videos"], data["clip_seconds"], data["short_clips"]) == (20, 20, 0.5, True)
    per_core = cells["per-core"]["figures"]["per_core"]
    assert set(per_core) == {"x3d_m", "mvit_b_16x4"} and all(m["clips_per_s_per_core"] > 0 for m in per_core.values())
    dry = cells["dryrun-cpu-smoke_x3d"]["figures"]
    assert dry["clips_per_s"] > 0 and 0 <= dry["data_wait_fraction"] <= 1 and dry["peak_memory_mib"] > 0
    assert dry["batch_size"] == 8 and dry["device"] == "cpu" and dry["num_workers"] == max(0, env["usable_cores"] - 1)
    assert dry["gpu_utilization_pct"] == dry["host_syncs_per_step"] == "not measured"
    sizing = document["sizing"]
    for model in ("x3d_m", "mvit_b_16x4"):
        assert sizing["models"][model]["clips_per_s_per_core"] == per_core[model]["clips_per_s_per_core"] > 0
        assert sizing["models"][model]["verdict"] == "not computed: no GPU clips/s"
    markdown = (out / "system_check.md").read_text()
    for text in ("# VMB system check", "## Environment", "## Dry runs (decoding video files)", "## Sizing",
                 "not computed: no GPU clips/s", "## Cells not run",
                 "- inference (bench_infer, batch 1 and 8): no CUDA device", SIZING_FORMULA):
        assert text in markdown
    printed = capsys.readouterr().out
    assert sum(line.startswith("dry run smoke X3D pyav (CPU cell)") and " ok " in line
               for line in printed.splitlines()) == 1


def test_a_usage_error_is_one_line(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert system_check_cli.main(["--out", str(a_file)]) == 2
    assert system_check_cli.main(["--out", str(tmp_path / "x"), "--budget-min", "0"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert errors == [f"error: --out {a_file} is a file: give a folder (it is created if missing)",
                      "error: --budget-min 0: must be a positive number of minutes"]


def process_gone(pid: int) -> bool:
    """Whether `pid` has exited (gone, or a zombie waiting for its reaper)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z"
    except (OSError, IndexError):
        return True


def test_a_cell_past_its_timeout_is_killed_and_the_later_cells_run(tmp_path):
    report = Report(tmp_path, budget_min=0.05)
    ctx = CellContext(out=tmp_path, env={})
    lines: list[str] = []
    runner = Runner(report, ctx, deadline=time.monotonic() + 6.0, grace_s=0.3, log=lines.append)
    pid_file = tmp_path / "grandchild.pid"
    # Ignores SIGINT (so it needs the SIGKILL) and leaves a grandchild in its process group.
    script = ("import signal, subprocess, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
              f"p = subprocess.Popen(['sleep', '60']); open({str(pid_file)!r}, 'w').write(str(p.pid)); "
              "print('started', flush=True); time.sleep(60)")

    def stubborn(c: CellContext) -> dict:
        c.execute([sys.executable, "-c", script], c.timeout_s, c.log_path, c.grace_s)
        return {}

    specs = [CellSpec("stubborn", "stubborn cell", G_DATA, stubborn),
             CellSpec("quick", "quick cell", G_DATA, lambda c: {"clips_per_s": 12.5}),
             CellSpec("big", "big cell", G_DATA, lambda c: {}, min_s=60)]
    runner.run(specs)
    cells = cells_by_id(json.loads((tmp_path / "system_check.json").read_text()))
    assert [c["status"] for c in cells.values()] == ["timeout", "ok", "not run: budget spent"]
    stubborn_cell = cells["stubborn"]
    # Its timeout: 1.5 x its third of the 5.7 s left (2.85 s), then 0.3 s of grace after SIGINT before SIGKILL.
    assert 2.8 < stubborn_cell["seconds"] < 4.5
    assert stubborn_cell["error"][0] == "stopped after its timeout of 3 s" and "started" in stubborn_cell["error"]
    deadline = time.monotonic() + 5
    while not process_gone(int(pid_file.read_text())) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_gone(int(pid_file.read_text()))  # the whole process group was killed
    assert cells["quick"]["summary"] == "12.5 clips/s" and len(lines) == 5  # 2 "running" lines, 3 rows


def fake_environment(gpus: int) -> dict:
    """What probe_environment says on a machine with `gpus` H200s (none: this CPU machine's shape)."""
    return {"cuda_available": gpus > 0, "cuda_devices": gpus,
            "gpus": [{"index": i, "name": "NVIDIA H200", "memory_gib": 139.8, "capability": "sm_90",
                      "pci_bus_id": f"00000000:{17 + i:02x}:00.0"} for i in range(gpus)],
            "driver_version": "580.65.06" if gpus else None, "driver_source": "NVML" if gpus else None,
            "nvml": "ok", "cuda_runtime": "13.0", "min_driver": "580.65.06", "driver_ok": True if gpus else None,
            "driver_verdict": "driver 580.65.06 is new enough for CUDA 13.x (minimum 580.65.06)",
            "cuda_arch_list": ["sm_90"], "nccl_version": "2.30.7",
            "bf16_native": True if gpus else None, "nvml_energy_readable": True if gpus else None,
            "cudnn_version": "92400", "cpu_model": "Xeon", "cpu_count": 16, "usable_cores": 16, "memory": "128 GiB",
            "os": "Linux", "python": "3.11", "versions": {"torch": torch.__version__}, "dali_importable": gpus > 0}


def write_synthetic_spec(argv: list[str]) -> None:
    """What tools/make_synthetic.py leaves behind, for its command line `argv` (the spec file only)."""
    value = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
    assert value["--profile"] == "kinetics" and "--force" in argv
    spec = profile_spec("kinetics", int(value["--train-per-class"]), int(value["--val-per-class"]),
                        float(value["--seconds"]), int(value["--seed"]))
    Path(value["--out"]).mkdir(parents=True, exist_ok=True)
    (Path(value["--out"]) / SPEC_FILE).write_text(json.dumps(asdict(spec)))


GPU_CLIPS_PER_S = {("x3d_m", "fp32"): 400.0, ("x3d_m", "bf16"): 520.0, ("mvit_b_16x4", "fp32"): 200.0,
                   ("mvit_b_16x4", "bf16"): 330.0}
PER_CORE = {"x3d_m": 40.0, "mvit_b_16x4": 30.0}


class FakeTools:
    """Stand-ins for the tools the cells run on a GPU machine: each command line is parsed by the real tool's parser
    (and its config overrides by load_config), then the tool's output file is written as the tool writes it."""

    def __init__(self, interrupt_on: str | None = None) -> None:
        self.commands: list[list[str]] = []
        self.interrupt_on = interrupt_on

    def __call__(self, command, timeout_s: float, log_path: Path, grace_s: float) -> Finished:
        command = [str(part) for part in command]
        assert command[0] == sys.executable and timeout_s > 0 and grace_s > 0
        self.commands.append(command)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("")
        if self.interrupt_on and self.interrupt_on in " ".join(command):
            raise KeyboardInterrupt
        if command[1].endswith("make_synthetic.py"):
            write_synthetic_spec(command[2:])
            return Finished(0, [])
        if command[1].endswith("bench_train.py"):
            return self.bench_train(command[2:])
        if command[1].endswith("bench_infer.py"):
            return self.bench_infer(command[2:])
        if command[1:3] == ["-m", "pytest"]:
            return self.pytest(command[3:])
        if command[1:3] == ["-m", "torch.distributed.run"]:
            return self.torchrun(command[3:])
        raise AssertionError(f"unexpected command {command}")

    def bench_train(self, argv: list[str]) -> Finished:
        args = train_bench.build_parser().parse_args(argv)
        train_bench.check_args(args)
        cfg = load_config(args.cfg, args.opts)
        model = {"dryrun_x3d_m": "x3d_m", "x3d_m": "x3d_m"}.get(cfg.BENCHMARK.NAME, "mvit_b_16x4")
        precision = args.precision or "fp32"  # both configs train in fp32
        s_iter = 0.1
        result = {"status": "ok", "batch_size": cfg.TRAIN.BATCH_SIZE // cfg.NUM_GPUS, "precision": precision,
                  "s_iter": {"mean": s_iter}, "data_s": {"mean": 0.0 if args.synthetic else 0.004},
                  "clips_per_s": GPU_CLIPS_PER_S[model, precision] * (1.0 if args.synthetic else 0.9),
                  "peak_memory_mib": 20000.0, "measured_iters": args.iters - args.warmup, "device": "cuda:0",
                  "num_workers": 15 if cfg.DATA_LOADER.NUM_WORKERS == "auto" else int(cfg.DATA_LOADER.NUM_WORKERS)}
        if cfg.DATA.DECODING_BACKEND != "torchcodec_cuda":  # the other engineer's keys: absent in one cell
            result.update(gpu_utilization_pct=97.5, host_syncs_per_step=0)
        args.json.write_text(json.dumps(result))
        return Finished(0, [])

    def bench_infer(self, argv: list[str]) -> Finished:
        args = infer.build_parser().parse_args(argv)
        infer.check_args(args)
        cells = [{"model": m, "batch_size": b, "precision": p, "status": "ok", "note": "", "p50_ms": 5.0,
                  "p95_ms": 6.0, "clips_per_s": 200.0 * b} for m in args.models for b in args.batch_sizes
                 for p in args.precision]
        args.json.write_text(json.dumps({"header": {}, "interrupted": False, "cells": cells}))
        return Finished(0, [])

    def pytest(self, argv: list[str]) -> Finished:
        assert argv[:2] == ["-m", "cuda"] and argv[-1].startswith("--junitxml=")
        Path(argv[-1].split("=", 1)[1]).write_text(
            '<testsuites><testsuite name="pytest">'
            '<testcase classname="tests.engine.test_cuda" name="test_train[fp32]" time="1.0"/>'
            '<testcase classname="tests.engine.test_cuda" name="test_syncing_op" time="0.1">'
            '<skipped type="pytest.xfail" message="known defect"/></testcase>'
            '<testcase classname="tests.data.test_backends" name="test_dali" time="0.0">'
            '<skipped type="pytest.skip" message="needs DALI">x</skipped></testcase>'
            '</testsuite></testsuites>')
        return Finished(0, [])

    def torchrun(self, argv: list[str]) -> Finished:
        from torch.distributed.run import get_args_parser

        launch = get_args_parser().parse_args(argv)
        assert launch.standalone
        world = int(launch.nproc_per_node)
        if launch.module:
            assert launch.training_script == "vmb.speed.allreduce_bench"
            args = allreduce_bench.build_parser().parse_args(launch.training_script_args)
            rows = []
            for size_mib in map(float, args.sizes_mib.split(",")):
                size, seconds = int(size_mib * 2**20), 0.002 * size_mib / 64
                algbw, busbw = allreduce_bench.bandwidth_gbps(size, seconds, world)
                rows.append({"size_mib": size_mib, "size_bytes": size, "time_ms": seconds * 1e3, "algbw_gbps": algbw,
                             "busbw_gbps": busbw})
            args.json.write_text(json.dumps({"world_size": world, "backend": "nccl", "rows": rows}))
            return Finished(0, [])
        assert launch.training_script.endswith("tools/run_net.py")
        script_args = launch.training_script_args
        assert script_args[0] == "--cfg"
        cfg = load_config(script_args[1], script_args[2:])
        assert (cfg.NUM_GPUS, world, cfg.SOLVER.MAX_EPOCH) == (2, 2, 1)
        assert not any(Path(cfg.OUTPUT_DIR).iterdir())  # the cell removed an earlier run's folder
        (Path(cfg.OUTPUT_DIR) / "result.json").write_text(json.dumps(
            {"status": "aborted", "n_devices": world, "epochs": 1.0, "train_clips_per_s": 700.0,
             "data_wait_fraction": 0.02, "num_workers": 8}))
        return Finished(1, ["target not reached: see result.json"])


@pytest.fixture
def fixed_per_core(monkeypatch):
    """The per-core cell's measurement replaced by fixed figures (it reads real videos)."""
    def measure(data_dir: Path, cpu_seconds: float) -> dict:
        assert (data_dir / SPEC_FILE).is_file() and cpu_seconds > 0
        return {name: {"clips_per_s_per_core": rate, "clips_per_s_wall": rate, "cpu_share": 1.0, "clips": 50,
                       "error": None} for name, rate in PER_CORE.items()}

    monkeypatch.setattr(check_cells, "measure_per_core", measure)


def test_every_gpu_cell_on_a_fake_two_gpu_machine(tmp_path, fixed_per_core):
    tools = FakeTools()
    lines: list[str] = []
    out = tmp_path / "check"
    out.mkdir()
    assert run_check(out, 8, log=lines.append, execute=tools, probe=lambda: fake_environment(2)) == 0
    document = json.loads((out / "system_check.json").read_text())
    cells = cells_by_id(document)
    assert "dryrun-cpu-smoke_x3d" not in cells  # the CPU cell is for machines without a GPU
    assert {c["status"] for c in cells.values()} == {"ok"} and set(GPU_CELLS) < set(cells)
    commands = {" ".join(c) for c in tools.commands}
    for model, config, batch in (("x3d_m", "X3D_M", 32), ("mvit_b_16x4", "MVIT_B_16x4", 16)):
        cfg = load_config(REPO_ROOT / "configs" / f"{config}.yaml")
        assert batch == cfg.TRAIN.BATCH_SIZE // cfg.NUM_GPUS  # the per-GPU batch comes from the config
        for backend, workers in (("pyav", "auto"), ("torchcodec_cuda", "0"), ("dali", "0")):
            cell = cells[f"dryrun-{model}-{backend}"]
            assert cell["figures"]["batch_size"] == batch and str(cell["figures"]["workers"]) == workers
            assert any(f"configs/dryrun/{config}.yaml" in c and f"DATA.PATH_TO_DATA_DIR {out / 'data'} "
                       f"DATA.DECODING_BACKEND {backend} DATA_LOADER.NUM_WORKERS {workers}" in c for c in commands)
            assert cell["figures"]["data_wait_fraction"] == pytest.approx(0.04)
            measured = backend != "torchcodec_cuda"
            assert cell["figures"]["gpu_utilization_pct"] == (97.5 if measured else "not measured")
            assert cell["figures"]["host_syncs_per_step"] == (0 if measured else "not measured")
        for precision in ("fp32", "bf16"):
            figures = cells[f"train-{model}-{precision}"]["figures"]
            assert figures["clips_per_s"] == GPU_CLIPS_PER_S[model, precision] and figures["batch_size"] == batch
    assert not any(" --batch-size " in c for c in commands)  # bench_train takes its share of the config's batch
    tests = cells["cuda-tests"]["figures"]
    assert tests["counts"] == {"passed": 1, "failed": 0, "skipped": 1, "xfail": 1, "xpass": 0}
    assert len(cells["inference"]["figures"]["rows"]) == 2 * 2 * 3
    nccl = cells["nccl-allreduce"]["figures"]
    assert [r["size_mib"] for r in nccl["rows"]] == [64.0, 256.0] and nccl["world_size"] == 2
    assert nccl["rows"][0]["busbw_gbps"] == pytest.approx(nccl["rows"][0]["algbw_gbps"])  # 2 (K - 1) / K = 1
    assert cells["dryrun-2gpu"]["figures"]["n_devices"] == 2
    sizing = document["sizing"]
    assert sizing["usable_cores_per_gpu"] == 8
    for model, gpu in (("x3d_m", 400.0), ("mvit_b_16x4", 200.0)):  # fp32: the configs' precision
        expected = math.ceil(gpu / (0.9 * PER_CORE[model])) + 1
        assert sizing["models"][model]["cores_per_gpu"] == expected
        assert sizing["models"][model]["verdict"] == f"{expected} cores per GPU"
    assert sizing["models"]["x3d_m"]["cores_per_gpu"] == 13 and sizing["models"]["mvit_b_16x4"]["cores_per_gpu"] == 9
    markdown = (out / "system_check.md").read_text()
    for text in ("## CUDA tests", "| tests.engine.test_cuda::test_syncing_op | xfail | known defect |",
                 "## Inference", "## Several GPUs", "| 256 |", "13 cores per GPU", "9 cores per GPU",
                 "this machine: 8 usable cores per GPU"):
        assert text in markdown
    assert "## Cells not run" not in markdown and "## Failures" not in markdown
    assert sum(line.startswith("dry run X3D-M pyav ") for line in lines) == 1


def test_ctrl_c_keeps_the_finished_cells_and_exits_130(tmp_path, fixed_per_core):
    tools = FakeTools(interrupt_on="bench_train.py")  # Ctrl-C during the CPU dry run, after data and per-core
    assert run_check(tmp_path, 1, log=lambda line: None, execute=tools, probe=lambda: fake_environment(0)) == 130
    document = json.loads((tmp_path / "system_check.json").read_text())
    assert document["interrupted"] and not document["complete"]
    cells = cells_by_id(document)
    assert [cells[i]["status"] for i in ("environment", "data", "per-core")] == ["ok"] * 3
    assert cells["dryrun-cpu-smoke_x3d"]["status"] == "not run: interrupted (Ctrl-C)"
    assert {cells[i]["status"] for i in GPU_CELLS} == {"not run: no CUDA device"}  # their own reason stays
    assert document["sizing"]["models"]["x3d_m"]["clips_per_s_per_core"] == PER_CORE["x3d_m"]
    assert "interrupted (Ctrl-C)" in (tmp_path / "system_check.md").read_text()


def test_a_failing_cell_keeps_its_last_lines_and_the_others_run(tmp_path, fixed_per_core):
    class FailingTests(FakeTools):
        def pytest(self, argv: list[str]) -> Finished:
            Path(argv[-1].split("=", 1)[1]).write_text(
                '<testsuites><testsuite><testcase classname="t" name="a"/><testcase classname="t" name="b">'
                '<failure message="AssertionError: assert 1 == 2&#10;more">trace</failure></testcase>'
                '</testsuite></testsuites>')
            return Finished(1, [])

        def bench_infer(self, argv: list[str]) -> Finished:
            return Finished(1, ["Traceback (most recent call last):", "RuntimeError: CUDA error: no kernel image"])

    assert run_check(tmp_path, 8, log=lambda line: None, execute=FailingTests(),
                     probe=lambda: fake_environment(1)) == 1
    cells = cells_by_id(json.loads((tmp_path / "system_check.json").read_text()))
    assert cells["cuda-tests"]["status"] == "failed"
    assert cells["cuda-tests"]["error"] == ["1 CUDA test(s) failed", "t::b: AssertionError: assert 1 == 2"]
    assert cells["inference"]["status"] == "failed"
    assert cells["inference"]["error"] == ["exit status 1, inference.json not written",
                                           "Traceback (most recent call last):",
                                           "RuntimeError: CUDA error: no kernel image"]
    assert cells["train-mvit_b_16x4-bf16"]["status"] == "ok"  # later cells still ran
    assert cells["nccl-allreduce"]["status"] == "not run: fewer than 2 CUDA devices"
    markdown = (tmp_path / "system_check.md").read_text()
    assert "inference (bench_infer, batch 1 and 8) (failed):" in markdown
    assert "- RuntimeError: CUDA error: no kernel image" in markdown


def test_driver_too_old_for_the_torch_build():
    ok, verdict = driver_verdict("575.57.08", "13.0", False)
    assert verdict == ("driver 575.57.08 is too old for torch's CUDA 13.0 build: CUDA 13.x needs driver 580.65.06 or "
                       "newer on Linux, so torch.cuda.is_available() is False. Upgrade the driver, or install a torch "
                       "build for an older CUDA (CUDA 12.x needs 525.60.13 or newer)") and ok is False
    assert driver_verdict("580.65.06", "13.0", True)[0] is True
    assert driver_verdict("580.105.08", "13.0", True)[0] is True
    assert driver_verdict("550.54.15", "12.8", True)[0] is True
    assert driver_verdict("520.61.05", "12.1", False)[0] is False
    assert driver_verdict(None, "13.0", False) == (
        None, "no NVIDIA driver found (NVML, /proc/driver/nvidia/version): torch's CUDA 13.0 build has no GPU to use")
    assert driver_verdict("580.65.06", None, False)[0] is None
    assert "not in this check's table" in driver_verdict("450.80.02", "11.8", True)[1]


def test_the_driver_is_read_from_nvml_where_torch_sees_no_gpu(monkeypatch):
    nvml = types.ModuleType("pynvml")
    calls: list[str] = []
    nvml.nvmlInit = lambda: calls.append("init")
    nvml.nvmlShutdown = lambda: calls.append("shutdown")
    nvml.nvmlSystemGetDriverVersion = lambda: "575.57.08"
    nvml.nvmlDeviceGetCount = lambda: 1
    nvml.nvmlDeviceGetHandleByIndex = lambda index: f"gpu{index}"
    nvml.nvmlDeviceGetName = lambda handle: b"NVIDIA H200"
    nvml.nvmlDeviceGetMemoryInfo = lambda handle: SimpleNamespace(total=150 * 2**30)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    env = probe_environment()
    assert calls == ["init", "shutdown"]
    assert (env["driver_version"], env["driver_source"], env["cuda_devices"]) == ("575.57.08", "NVML", 0)
    assert env["gpus"] == [{"index": 0, "name": "NVIDIA H200", "memory_gib": 150.0}]
    assert env["driver_ok"] is False and "too old" in env["driver_verdict"] and env["min_driver"] == "580.65.06"


def test_proc_driver_version():
    proprietary = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\nGCC..."
    open_module = ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build  "
                   "(dvs-builder@U16-I3-B03-4-3)  Tue Jul 15 12:43:45 UTC 2025")
    assert proc_driver_version(proprietary) == "535.104.05"
    assert proc_driver_version(open_module) == "580.65.06"
    assert proc_driver_version("GCC version: gcc 12") is None


def test_junit_summary():
    xml = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="6">
      <testcase classname="tests.engine.test_cuda" name="test_a[fp32]" time="1.0"/>
      <testcase classname="tests.engine.test_cuda" name="test_b" time="1.0">
        <failure message="AssertionError: logits differ&#10;assert 0.3 &lt; 0.01">long trace</failure></testcase>
      <testcase classname="tests.engine.test_cuda" name="test_c" time="0.0">
        <skipped type="pytest.skip" message="needs two GPUs">tests/engine/test_cuda.py:90: needs two GPUs</skipped>
      </testcase>
      <testcase classname="tests.engine.test_cuda" name="test_d" time="0.1">
        <skipped type="pytest.xfail" message="these ops sync today"/></testcase>
      <testcase classname="tests.engine.test_cuda" name="test_e" time="0.1">
        <failure message="[XPASS(strict)] these ops sync today">[XPASS(strict)] these ops sync today</failure>
      </testcase>
      <testcase classname="tests.data.test_backends" name="test_f" time="0.1">
        <error message="failed on setup with &quot;RuntimeError: no device&quot;">trace</error></testcase>
    </testsuite></testsuites>"""
    summary = junit_summary(xml)
    assert summary["counts"] == {"passed": 1, "failed": 2, "skipped": 1, "xfail": 1, "xpass": 1}
    assert [(t["test"], t["outcome"], t["message"]) for t in summary["tests"]] == [
        ("tests.engine.test_cuda::test_a[fp32]", "passed", ""),
        ("tests.engine.test_cuda::test_b", "failed", "AssertionError: logits differ"),
        ("tests.engine.test_cuda::test_c", "skipped", "needs two GPUs"),
        ("tests.engine.test_cuda::test_d", "xfail", "these ops sync today"),
        ("tests.engine.test_cuda::test_e", "xpass", "[XPASS(strict)] these ops sync today"),
        ("tests.data.test_backends::test_f", "failed", 'failed on setup with "RuntimeError: no device"')]


def test_bench_json_to_cell_figures():
    result = {"status": "ok", "device": "cuda:0", "batch_size": 32, "precision": "fp32", "num_workers": 15,
              "measured_iters": 40, "s_iter": {"mean": 0.08, "p50": 0.08}, "data_s": {"mean": 0.012},
              "clips_per_s": 400.0, "peak_memory_mib": 30123.4, "gpu_utilization_pct": 91.0, "host_syncs_per_step": 0}
    figures = bench_figures(result)
    assert figures["data_wait_fraction"] == pytest.approx(0.15) and figures["clips_per_s"] == 400.0
    assert (figures["gpu_utilization_pct"], figures["host_syncs_per_step"]) == (91.0, 0)  # 0 syncs is measured
    assert bench_summary(figures) == ("400.0 clips/s, data wait 15.0 %, peak 30123 MiB, GPU util % 91.0, "
                                      "syncs/step 0")
    cpu = bench_figures({**result, "gpu_utilization_pct": None, "host_syncs_per_step": None})
    assert cpu["gpu_utilization_pct"] == cpu["host_syncs_per_step"] == "not measured"
    older = {k: v for k, v in result.items() if k not in ("gpu_utilization_pct", "host_syncs_per_step")}
    assert bench_figures(older)["host_syncs_per_step"] == "not measured"
    interrupted = bench_figures({"status": "interrupted", "s_iter": None, "data_s": None, "clips_per_s": None})
    assert interrupted["data_wait_fraction"] is None and interrupted["bench_status"] == "interrupted"


def test_nccl_bandwidth_arithmetic():
    algbw, busbw = allreduce_bench.bandwidth_gbps(256 * 2**20, 0.002, 8)
    assert algbw == pytest.approx(268435456 / 0.002 / 1e9)  # 134.2 GB/s
    assert busbw == pytest.approx(algbw * 2 * 7 / 8)
    assert allreduce_bench.bandwidth_gbps(2**30, 1.0, 2) == pytest.approx((1.073741824, 1.073741824))
    assert allreduce_bench.bandwidth_gbps(2**30, 1.0, 1)[1] == 0.0  # one rank moves nothing over the links
    assert cores_per_gpu(400.0, 40.0) == 13  # ceil(400 / 36) + 1


def test_the_allreduce_script_runs_on_the_cpu(tmp_path, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "allreduce.json"
    assert allreduce_bench.main(["--device", "cpu", "--sizes-mib", "1,2", "--warmup", "1", "--iters", "2",
                                 "--json", str(out)]) == 0
    document = json.loads(out.read_text())
    assert (document["world_size"], document["backend"]) == (1, "gloo")
    assert [r["size_bytes"] for r in document["rows"]] == [2**20, 2**21]
    for r in document["rows"]:
        assert r["time_ms"] > 0 and r["algbw_gbps"] == pytest.approx(r["size_bytes"] / (r["time_ms"] / 1e3) / 1e9)
        assert r["busbw_gbps"] == 0.0


def test_the_plan_follows_the_budget():
    tiny = make_plan(60, 2, 0)
    assert (tiny.train_per_class, tiny.clip_seconds, tiny.span_seconds) == (1, 3.0, 2.667)
    gpu = make_plan(480, 16, 1)
    assert gpu.train_per_class == MAX_TRAIN_PER_CLASS and gpu.clip_seconds == 3.0
    assert (gpu.dry_warmup, gpu.dry_iters, gpu.train_warmup, gpu.train_iters) == (5, 25, 10, 50)
    short = make_plan(60, 1, 1)  # the global batch needs 7 videos per class: shorter clips
    assert short.train_per_class == 7 and short.clip_seconds == MIN_CLIP_S


def test_failed_cell_helpers(tmp_path):
    ctx = CellContext(out=tmp_path, env={}, cell_id="x", timeout_s=5, grace_s=1,
                      execute=lambda *args: Finished(3, ["boom"]))
    with pytest.raises(CellFailed) as failed:
        run_tool(ctx, ["tool"], tmp_path / "x.json", lambda path: {})
    assert str(failed.value) == "exit status 3, x.json not written" and failed.value.tail == ["boom"]
    assert failed.value.figures == {"command": "tool"}
