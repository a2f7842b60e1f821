"""vmb.speed.runtimes and tools/bench_infer.py --runtime: which cells run where and why the others do not (a runtime
not installed, no CUDA device, a precision not offered), the ONNX Runtime cells (fp32 export, int8 QDQ) side by
side with eager PyTorch in the table, JSON and CSV, an ONNX file of another model refused, and an operator a
runtime does not support failing its cells only."""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass

import pytest
import torch

from vmb.cli.bench_infer import main
from vmb.models import zoo
from vmb.speed import runtimes
from vmb.speed.export import DeployError, ExportError, build_zoo_model, zoo_spec
from vmb.speed.quantize import RANDOM_CLIPS
from vmb.speed.runtimes import ModelRunners, OnnxFiles, unavailable

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


class SmallNet(torch.nn.Module):
    """Conv3d + ReLU + pool + linear: exports and quantizes in about a second."""

    def __init__(self, num_classes: int, kth: bool) -> None:
        super().__init__()
        self.conv, self.fc, self.kth = torch.nn.Conv3d(3, 8, 3), torch.nn.Linear(8, num_classes), kth

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, H, W) -> (N, num_classes); with `kth`, through an operator ONNX has no translation for."""
        features = self.conv(clips).relu()
        pooled = torch.kthvalue(features.flatten(2), 1, dim=2).values if self.kth else features.mean((2, 3, 4))
        return self.fc(pooled)


@dataclass(frozen=True)
class SmallZooModel:
    """A zoo entry (vmb.models.zoo.ZooModel's contract) that every runtime can run in milliseconds."""

    name: str = "small"
    arch: str = "smallnet"
    num_frames: int = 4
    crop_size: int = 12
    published_params_m: float = 0.0
    kth: bool = False

    def build(self, num_classes: int = 400) -> torch.nn.Module:
        return SmallNet(num_classes, self.kth)

    def example_input(self, batch_size: int, device: torch.device | str = "cpu",
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.randn(batch_size, 3, self.num_frames, self.crop_size, self.crop_size, device=device, dtype=dtype)


@pytest.fixture
def small(monkeypatch):
    """`small(name, **fields)` puts a SmallZooModel into the zoo; returns it."""
    def add(name: str = "small", **fields) -> SmallZooModel:
        model = SmallZooModel(name=name, **fields)
        monkeypatch.setitem(zoo.ZOO, name, model)
        return model

    return add


def bench(tmp_path, *options: str) -> tuple[int, dict, list[dict]]:
    """bench_infer on the CPU with JSON and CSV output: (exit status, document, CSV rows)."""
    status = main(["--device", "cpu", "--warmup", "1", "--iters", "2", "--json", str(tmp_path / "out.json"),
                   "--csv", str(tmp_path / "out.csv"), *options])
    with (tmp_path / "out.csv").open(newline="") as f:
        return status, json.loads((tmp_path / "out.json").read_text()), list(csv.DictReader(f))


def test_which_cells_run_on_the_cpu():
    assert unavailable("torch", "fp32", CPU) is None and unavailable("compile", "bf16", CPU) is None
    assert unavailable("torch", "fp16", CPU) == "fp16 needs a CUDA device"
    assert unavailable("torch", "int8", CPU) == "int8 runs on onnxruntime (CPU) and tensorrt (CUDA), as a quantized " \
                                               "ONNX model"
    assert unavailable("onnxruntime", "fp32", CPU) is None and unavailable("onnxruntime", "int8", CPU) is None
    assert unavailable("onnxruntime", "fp16", CPU) == "onnxruntime fp16 runs on its CUDA provider only"
    assert unavailable("onnxruntime", "bf16", CPU) == "onnxruntime runs fp32, fp16 and int8; bf16 runs on torch " \
                                                      "and compile"
    assert unavailable("tensorrt", "fp32", CPU) == ("tensorrt not installed (pip install -e .[deploy-gpu]); tensorrt "
                                                    "needs a CUDA device (this run is on the cpu)")


def test_which_cells_run_on_cuda(monkeypatch):
    # this CPU build of onnxruntime has no CUDA provider; tensorrt as if installed
    assert unavailable("onnxruntime", "fp32", CUDA) == ("onnxruntime has no CUDA provider here: install "
                                                        "onnxruntime-gpu (pip install -e .[deploy-gpu])")
    real = runtimes.installed
    monkeypatch.setattr(runtimes, "installed", lambda module: module == "tensorrt" or real(module))
    assert unavailable("tensorrt", "int8", CUDA) is None and unavailable("tensorrt", "fp16", CUDA) is None
    monkeypatch.setattr("onnxruntime.get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert unavailable("onnxruntime", "fp16", CUDA) is None
    assert unavailable("onnxruntime", "int8", CUDA) == ("onnxruntime int8 (QDQ) runs on its CPU provider; on CUDA use "
                                                        "tensorrt int8")


def test_missing_packages_are_named(monkeypatch):
    monkeypatch.setattr(runtimes, "installed", lambda module: module != "onnxscript")
    assert unavailable("onnxruntime", "fp32", CPU) == "onnxscript not installed (pip install -e .[deploy])"
    assert unavailable("tensorrt", "fp32", CUDA) == "onnxscript not installed (pip install -e .[deploy-gpu])"


def test_bench_infer_puts_runtimes_side_by_side(small, tmp_path, capsys):
    small()
    status, document, rows = bench(tmp_path, "--models", "small", "--batch-sizes", "1,3", "--runtime",
                                   "torch,onnxruntime,tensorrt", "--precision", "fp32,int8", "--calib-clips", "8")
    assert status == 0
    cells = {(c["batch_size"], c["runtime"], c["precision"]): c for c in document["cells"]}
    assert list(cells) == [(b, r, p) for b in (1, 3) for r in ("torch", "onnxruntime", "tensorrt")
                           for p in ("fp32", "int8")]
    for batch in (1, 3):
        for runtime, precision in (("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")):
            cell = cells[batch, runtime, precision]
            assert cell["status"] == "ok" and cell["iters"] == 2 and len(cell["latencies_ms"]) == 2
            assert cell["timer"] == "time.perf_counter"
        assert cells[batch, "torch", "int8"]["status"] == "skipped"
        for precision in ("fp32", "int8"):
            trt = cells[batch, "tensorrt", precision]
            assert trt["status"] == "skipped" and trt["note"].startswith("tensorrt not installed")
    header = document["header"]
    assert header["runtimes"]["tensorrt"] == "not installed"
    assert header["runtimes"]["onnxruntime"].startswith("onnxruntime 1.")
    assert header["calibration"] == {"clips": 8, "seed": 0, "source": RANDOM_CLIPS}
    files = header["models"]["small"]["deployment"]
    assert files["onnx"]["max_abs_diff"] <= files["onnx"]["bound"] and files["onnx"]["opset"] == 20
    assert files["int8-cpu"]["calibration"] == {"clips": 8, "seed": 0, "batch_size": 3, "source": RANDOM_CLIPS}
    assert [(r["batch_size"], r["runtime"], r["precision"], r["status"]) for r in rows[:3]] == [
        ("1", "torch", "fp32", "ok"), ("1", "torch", "int8", "skipped"), ("1", "onnxruntime", "fp32", "ok")]
    out = capsys.readouterr().out
    table = out[out.index("latency per forward pass and throughput"):].splitlines()
    assert re.split(r"\s{2,}", table[1].strip())[:4] == ["model", "batch", "runtime", "precision"]
    assert table[5].split()[:5] == ["small", "1", "onnxruntime", "int8", "2"]
    assert "ONNX files (onnxruntime, tensorrt)" in out and "uint8, asymmetric, per tensor activations" in out


def test_an_onnx_file_of_another_model_is_refused(small, tmp_path, capsys):
    model = small("small")
    small("other", crop_size=16)
    files = OnnxFiles(zoo_spec(model), tmp_path, lambda: build_zoo_model(model),
                      lambda: (zoo_spec(model).random_clips(2, 0), "random clips"), lambda: None)
    path = files.path("onnxruntime", "fp32")
    assert main(["--models", "other", "--runtime", "onnxruntime", "--onnx", str(path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --onnx {path}: an ONNX file of small, not one of --models other\n"
    status, document, _ = bench(tmp_path, "--models", "small", "--runtime", "onnxruntime", "--precision", "fp32",
                                "--batch-sizes", "2", "--onnx", str(path))
    assert status == 0 and document["cells"][0]["status"] == "ok"
    assert document["header"]["models"]["small"]["deployment"]["onnx"] == {"file": str(path), "given": True,
                                                                           "opset": 20}


def test_an_operator_a_runtime_lacks_fails_its_cells_only(small, tmp_path):
    small(kth=True)
    status, document, _ = bench(tmp_path, "--models", "small", "--runtime", "onnxruntime,torch", "--precision",
                                "fp32,int8", "--batch-sizes", "1")
    assert status == 0
    onnx_fp32, onnx_int8, torch_fp32, _ = document["cells"]
    assert onnx_fp32["status"] == onnx_int8["status"] == "skipped"
    assert onnx_fp32["note"].startswith("cannot export small to ONNX: operator aten.kthvalue is not supported by "
                                        "the ONNX exporter")
    assert onnx_int8["note"] == onnx_fp32["note"]  # the export is tried once per model
    assert torch_fp32["status"] == "ok"


def test_runners_are_made_once_and_failures_kept(small, tmp_path, monkeypatch):
    model = small(kth=True)
    exports = []

    def counted_export(*args, **kwargs):
        exports.append(args[1].name)
        raise ExportError("cannot export small to ONNX: operator aten.kthvalue is not supported")

    monkeypatch.setattr(runtimes, "export_model", counted_export)
    files = OnnxFiles(zoo_spec(model), tmp_path, lambda: None, lambda: (None, ""), lambda: None)
    runners = ModelRunners(build_zoo_model(model), CPU, files.path, 4)
    assert runners.get("torch", "fp32") is runners.get("torch", "fp32")
    for precision in ("fp32", "int8", "fp32"):
        with pytest.raises(DeployError, match="operator aten.kthvalue"):
            runners.get("onnxruntime", precision)
    assert exports == ["small"]
    with pytest.raises(DeployError, match="fp16 needs a CUDA device"):
        runners.get("compile", "fp16")


@pytest.mark.parametrize("options, message", [
    (["--runtime", "torch,tvm"], "--runtime tvm: unknown; valid: torch, compile, onnxruntime, tensorrt"),
    (["--onnx", "x.onnx"], "--onnx x.onnx: only the onnxruntime and tensorrt runtimes run ONNX files; add --runtime "
                           "onnxruntime"),
    (["--runtime", "onnxruntime", "--precision", "int8", "--calib-clips", "4"],
     "--calib-clips 4: too few clips to calibrate int8; give at least 8"),
    (["--runtime", "onnxruntime", "--precision", "int8", "--batch-sizes", "1,16", "--calib-clips", "12"],
     "--calib-clips 12: too few clips to calibrate int8; give at least 16"),
])
def test_bad_runtime_options_are_one_line(small, capsys, options, message):
    small()
    assert main(["--models", "small", "--device", "cpu", *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and len(err.splitlines()) == 1


def test_onnxruntime_runner_matches_torch_at_any_batch(small, tmp_path):
    model = small()
    spec, torch_model = zoo_spec(model), build_zoo_model(model)
    files = OnnxFiles(spec, tmp_path, lambda: build_zoo_model(model), lambda: (spec.random_clips(2, 0), "random"),
                      lambda: None)
    runner = ModelRunners(torch_model, CPU, files.path, 4).get("onnxruntime", "fp32")
    assert runner.host_timed and runner.runtime == "onnxruntime"
    for batch in (1, 4):
        clips = spec.random_clips(batch, batch)
        with torch.inference_mode():
            assert torch.allclose(runner(clips), torch_model(clips), atol=1e-5)
