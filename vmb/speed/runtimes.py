"""Deployment runtimes of bench_infer and test_net: one runner per (runtime, precision) cell of a model.

- torch: eager PyTorch; bf16 and fp16 by autocast, under vmb.engine.precision's rule (fp16 on CUDA only, bf16
  only where native).
- compile: torch.compile of the same model (compiled at its first call: bench_infer's warm-up).
- onnxruntime: ONNX Runtime on the model's ONNX files (`OnnxFiles`): on the CPU its CPU provider; on CUDA its CUDA
  provider (onnxruntime-gpu), the clips bound where they lie (I/O binding: no copy through the host). fp32 (the
  export) on both, int8 (the QDQ quantization, target "cpu") on the CPU, fp16 (the fp16 conversion) on CUDA.
- tensorrt: an engine built by TensorRT's ONNX parser from the same files, strongly typed (TensorRT 10 and 11:
  the precision is the ONNX's tensor types, not builder flags, which TensorRT 11 removed): fp32, fp16, int8 (the
  QDQ quantization, target "tensorrt"); CUDA only; one optimisation profile from batch 1 to the tool's largest.

bf16 runs on torch and compile only. A cell that cannot run here (`unavailable`: a package not installed, no
CUDA device, a precision the runtime does not offer) or whose runner cannot be made (DeployError: an operator the
exporter or the runtime does not support, an engine that does not build) is reported with its one-line reason,
and the tool goes on with the next cell, as for a precision the device lacks.

Timing: torch, compile and tensorrt enqueue on torch's current CUDA stream (CUDA events time them); ONNX
Runtime's run returns once its own stream is done, so it is timed on the host clock (`Runner.host_timed`).
"""
from __future__ import annotations

import functools
import importlib.util
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import torch

from vmb.engine.precision import PRECISIONS, autocast, unsupported
from vmb.speed.export import (INSTALL_HINT, OUTPUT_NAME, Clips, DeployError, ModelSpec, check_matches, config_spec,
                              export_model, flat, host_feeds, open_session, random_check_clips, read_metadata,
                              run_feeds)
from vmb.speed.quantize import Calibration

RUNTIMES = ("torch", "compile", "onnxruntime", "tensorrt")
ONNX_RUNTIMES = ("onnxruntime", "tensorrt")  # the runtimes that run ONNX files
DEPLOY_PRECISIONS = (*PRECISIONS, "int8")
GPU_INSTALL_HINT = "pip install -e .[deploy-gpu]"
T = TypeVar("T")


def installed(module: str) -> bool:
    """Whether `module` can be imported (without importing it)."""
    return importlib.util.find_spec(module) is not None


def unavailable(runtime: str, precision: str, device: torch.device) -> str | None:
    """Why the cell (`runtime`, `precision`) cannot run on `device`, or None if it can (module docstring)."""
    if runtime in ("torch", "compile"):
        if precision == "int8":
            return "int8 runs on onnxruntime (CPU) and tensorrt (CUDA), as a quantized ONNX model"
        return unsupported(precision, device)
    if precision == "bf16":
        return f"{runtime} runs fp32, fp16 and int8; bf16 runs on torch and compile"
    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if not installed(m)]  # export, check, quantization
    if runtime == "onnxruntime":
        if missing:
            return f"{', '.join(missing)} not installed ({INSTALL_HINT})"
        if device.type == "cuda":
            import onnxruntime

            if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
                return f"onnxruntime has no CUDA provider here: install onnxruntime-gpu ({GPU_INSTALL_HINT})"
            if precision == "int8":
                return "onnxruntime int8 (QDQ) runs on its CPU provider; on CUDA use tensorrt int8"
        elif precision == "fp16":
            return "onnxruntime fp16 runs on its CUDA provider only"
        return None
    absent = missing + ([] if installed("tensorrt") else ["tensorrt"])
    reasons = [f"{', '.join(absent)} not installed ({GPU_INSTALL_HINT})"] if absent else []
    if device.type != "cuda":
        reasons.append(f"tensorrt needs a CUDA device (this run is on the {device.type})")
    return "; ".join(reasons) or None


def _once(made: dict, key: object, make: Callable[[], T]) -> T:
    """`make()` the first time `key` is asked for; after that the same result, or the same DeployError again."""
    if key not in made:
        try:
            made[key] = make()
        except DeployError as exc:
            made[key] = exc
    if isinstance(made[key], DeployError):
        raise made[key]
    return made[key]


@dataclass
class Runner:
    """One cell's model: `prepare` puts clips into the runtime's form (once per batch, untimed in bench_infer),
    `run` computes their logits under `context`; calling the runner does both."""

    runtime: str
    precision: str
    prepare: Callable[[Clips], object]
    run: Callable[[object], torch.Tensor]
    context: AbstractContextManager = field(default_factory=nullcontext)
    host_timed: bool = False  # run() returns once the device is done: time it on the host clock

    def __call__(self, clips: Clips) -> torch.Tensor:
        with self.context:
            return self.run(self.prepare(clips))


class OnnxFiles:
    """The ONNX files of one model, each made on first use in `folder` and kept: the fp32 export (or the `given`
    file, already checked against the model), its fp16 conversion, and its int8 quantization per target. A failure
    is kept too: later requests raise the same DeployError without trying again. `info` records what was made."""

    def __init__(self, spec: ModelSpec, folder: Path, build_model: Callable[[], torch.nn.Module],
                 check_clips: Callable[[], tuple[Clips, str]], calibration: Callable[[], Calibration],
                 given: Path | None = None) -> None:
        self.spec, self.folder, self.given = spec, folder, given
        self._build_model, self._check_clips, self._calibration = build_model, check_clips, calibration
        self._calibration_set: Calibration | None = None
        self._made: dict[str, Path | DeployError] = {}
        self.info: dict = {}

    def path(self, runtime: str, precision: str) -> Path:
        """The file the cell (`runtime`, `precision`) runs (an ONNX runtime's; fp32, fp16 or int8)."""
        kind = f"int8-{'cpu' if runtime == 'onnxruntime' else 'tensorrt'}" if precision == "int8" else precision
        return _once(self._made, kind, functools.partial(self._make, kind))

    def _make(self, kind: str) -> Path:
        from vmb.speed import quantize

        if kind == "fp32":
            if self.given is not None:
                self.info["onnx"] = {"file": str(self.given), "given": True,
                                     "opset": int(read_metadata(self.given)["opset"])}
                return self.given
            clips, source = self._check_clips()
            result = export_model(self._build_model(), self.spec, self.folder / f"{self.spec.name}.onnx", clips,
                                  source)
            self.info["onnx"] = result.describe()
            return result.path
        fp32 = self.path("onnxruntime", "fp32")
        out = self.folder / f"{self.spec.name}-{kind}.onnx"
        if kind != "fp16" and self._calibration_set is None:  # drawn once, for every target; its errors are the user's
            self._calibration_set = self._calibration()
        try:
            if kind == "fp16":
                quantize.convert_fp16(fp32, out)
                self.info["fp16"] = {"converter": "onnxruntime.transformers.float16, fp32 inputs and outputs"}
            else:
                self.info[kind] = quantize.quantize_int8(fp32, out, self.spec.input_names, self._calibration_set,
                                                         kind.split("-")[1])
        except Exception as exc:  # the converter's and quantizer's own errors: this model's cells only
            raise DeployError(f"cannot make the {kind} ONNX file of {self.spec.name}: {type(exc).__name__}: "
                              f"{(str(exc).splitlines() or [''])[0][:200]}") from None
        return out


def _cuda_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def onnxruntime_runner(path: Path, precision: str, device: torch.device) -> Runner:
    """ONNX Runtime on `path`: the CPU provider on the CPU (clips as NumPy views of host tensors), else the CUDA
    provider with the clips and logits bound on the GPU."""
    if device.type != "cuda":
        session = open_session(path)
        names = [i.name for i in session.get_inputs()]
        return Runner("onnxruntime", precision, functools.partial(host_feeds, names),
                      functools.partial(run_feeds, session), host_timed=True)
    import onnxruntime

    onnxruntime.preload_dlls()  # the CUDA and cuDNN libraries of torch's nvidia-* wheels, before the session loads
    index = _cuda_index(device)
    session = open_session(path, [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"])
    if "CUDAExecutionProvider" not in session.get_providers():  # ORT falls back to the CPU with a warning only
        raise DeployError(f"onnxruntime could not start its CUDA provider for {path} (CUDA or cuDNN libraries "
                          "missing? see its warning above)")
    names, classes = [i.name for i in session.get_inputs()], session.get_outputs()[0].shape[1]

    def bind(clips: Clips) -> tuple:
        inputs = [t.to(device, torch.float32).contiguous() for t in flat(clips)]
        logits = torch.empty((inputs[0].shape[0], classes), device=device)
        binding = session.io_binding()
        for name, tensor in zip(names, inputs):
            binding.bind_input(name, "cuda", index, np.float32, tuple(tensor.shape), tensor.data_ptr())
        binding.bind_output(OUTPUT_NAME, "cuda", index, np.float32, tuple(logits.shape), logits.data_ptr())
        torch.cuda.current_stream(device).synchronize()  # torch's stream wrote the clips; ORT reads on its own
        return binding, inputs, logits

    def run(bound: tuple) -> torch.Tensor:
        session.run_with_iobinding(bound[0])
        return bound[2]

    return Runner("onnxruntime", precision, bind, run, host_timed=True)


def tensorrt_runner(path: Path, precision: str, device: torch.device, max_batch: int) -> Runner:
    """A strongly typed TensorRT engine of `path` for batches 1 to `max_batch`, run on torch's current stream."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)):
        error = parser.get_error(0) if parser.num_errors else None
        where = f"node {error.node_name()!r} ({error.node_operator()}): {error.desc()}" if error else "no error given"
        raise DeployError(f"tensorrt cannot parse {path}: {where}")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        view = tuple(tensor.shape)[1:]
        profile.set_shape(tensor.name, (1, *view), (max_batch, *view), (max_batch, *view))
    config.add_optimization_profile(profile)
    with torch.cuda.device(device):
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise DeployError(f"tensorrt could not build a {precision} engine from {path} (its log above says why)")
        engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
        context = engine.create_execution_context()
    dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16, trt.DataType.BF16: torch.bfloat16}
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    output = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)

    def prepare(clips: Clips) -> tuple:
        tensors = [t.to(device, dtypes[engine.get_tensor_dtype(n)]).contiguous() for n, t in zip(inputs, flat(clips))]
        for name, tensor in zip(inputs, tensors):
            context.set_input_shape(name, tuple(tensor.shape))
        logits = torch.empty(tuple(context.get_tensor_shape(output)), dtype=dtypes[engine.get_tensor_dtype(output)],
                             device=device)
        return tensors, logits

    def run(prepared: tuple) -> torch.Tensor:
        tensors, logits = prepared
        for name, tensor in zip(inputs, tensors):  # set per call: one context serves every prepared batch
            context.set_input_shape(name, tuple(tensor.shape))
            context.set_tensor_address(name, tensor.data_ptr())
        context.set_tensor_address(output, logits.data_ptr())
        if not context.execute_async_v3(torch.cuda.current_stream(device).cuda_stream):
            raise DeployError(f"tensorrt failed to run the {precision} engine of {path}")
        return logits

    return Runner("tensorrt", precision, prepare, run)


class ModelRunners:
    """The runners of one model's cells on `device`, each made on first use and kept (a compiled model, an ONNX
    Runtime session or a TensorRT engine serves every batch size); `onnx_path(runtime, precision)` gives an ONNX
    runtime's file. A cell that cannot run raises DeployError with its reason."""

    def __init__(self, model: torch.nn.Module, device: torch.device, onnx_path: Callable[[str, str], Path],
                 max_batch: int) -> None:
        self.model, self.device, self.onnx_path, self.max_batch = model, device, onnx_path, max_batch
        self._compiled: torch.nn.Module | None = None
        self._runners: dict[tuple[str, str], Runner | DeployError] = {}

    def get(self, runtime: str, precision: str) -> Runner:
        """The cell's runner (module docstring)."""
        return _once(self._runners, (runtime, precision), functools.partial(self._make, runtime, precision))

    def _make(self, runtime: str, precision: str) -> Runner:
        why = unavailable(runtime, precision, self.device)
        if why:
            raise DeployError(why)
        if runtime in ("torch", "compile"):
            if runtime == "compile" and self._compiled is None:
                self._compiled = torch.compile(self.model)
            module = self._compiled if runtime == "compile" else self.model
            return Runner(runtime, precision, lambda clips: clips, module, autocast(precision, self.device))
        path = self.onnx_path(runtime, precision)
        if runtime == "onnxruntime":
            return onnxruntime_runner(path, precision, self.device)
        return tensorrt_runner(path, precision, self.device, self.max_batch)


@dataclass
class DeployCells:
    """test_net's cells beyond eager PyTorch (vmb.engine.multiview.CellFactory): the ONNX files are made once, in
    the launching process, before the testing processes start (`prepare_cells`); each process makes its runners
    from them. `info` is what the report says about the files (export check, quantization, calibration)."""

    paths: dict[tuple[str, str], Path]
    failures: dict[tuple[str, str], str]
    max_batch: int
    info: dict

    def _path(self, runtime: str, precision: str) -> Path:
        if (runtime, precision) in self.failures:
            raise DeployError(self.failures[runtime, precision])
        return self.paths[runtime, precision]

    def __call__(self, model: torch.nn.Module, cells: list[tuple[str, str]],
                 device: torch.device) -> tuple[list[tuple[str, str, Runner]], list[str]]:
        runners = ModelRunners(model, device, self._path, self.max_batch)
        ready, notes = [], []
        for runtime, precision in cells:
            try:
                ready.append((runtime, precision, runners.get(runtime, precision)))
            except DeployError as exc:
                notes.append(f"{runtime} {precision} skipped: {exc}")
        return ready, notes


def prepare_cells(cells: list[tuple[str, str]], device: torch.device, files: OnnxFiles,
                  max_batch: int) -> DeployCells:
    """Make the ONNX files the runnable cells need (a failure is that cell's note), for `DeployCells`."""
    paths, failures = {}, {}
    for runtime, precision in cells:
        if runtime in ONNX_RUNTIMES and unavailable(runtime, precision, device) is None:
            try:
                paths[runtime, precision] = files.path(runtime, precision)
            except DeployError as exc:
                failures[runtime, precision] = str(exc)
    return DeployCells(paths, failures, max_batch, files.info)


def checkpoint_cells(cfg, cfg_file: str, checkpoint: Path, cells: list[tuple[str, str]], folder: Path,
                     onnx: Path | None, calib_clips: int, calib_seed: int) -> DeployCells:
    """test_net's DeployCells for `checkpoint`: its model loaded on the CPU (a checkpoint of another architecture
    is one line), a given ONNX file checked against it, the int8 calibration's size checked, and the files the
    cells need made in `folder` (int8: calibrated on `calib_clips` clips of the train split drawn with
    `calib_seed`; the largest test batch is the engines' largest)."""
    from vmb.engine.checkpoint import load_weights
    from vmb.engine.distributed import use_cuda
    from vmb.engine.multiview import videos_per_batch
    from vmb.models.build import build_model
    from vmb.speed.quantize import split_calibration

    model = build_model(cfg)
    load_weights(model, checkpoint, cfg.MODEL.ARCH, cfg_file)
    spec = config_spec(cfg, cfg_file, checkpoint)
    if onnx is not None:
        check_matches(onnx, spec, f"tools/export.py --cfg {cfg_file} --checkpoint {checkpoint} --out FILE")
    device = torch.device("cuda" if use_cuda(cfg.NUM_GPUS) else "cpu")
    batch = videos_per_batch(cfg, 1) * cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS
    calibration = None
    if any(runtime in ONNX_RUNTIMES and precision == "int8" and unavailable(runtime, precision, device) is None
           for runtime, precision in cells):  # drawn first: a set too small is one line before any export
        calibration = split_calibration(cfg, calib_clips, calib_seed, batch)
    files = OnnxFiles(spec, folder, lambda: model, functools.partial(random_check_clips, spec), lambda: calibration,
                      given=onnx)
    return prepare_cells(cells, device, files, batch)


def runtime_versions(runtimes: list[str]) -> dict[str, str]:
    """Each runtime's software as the reports name it, or "not installed"."""
    from importlib.metadata import PackageNotFoundError, version

    def package(*names: str) -> str:
        for name in names:
            try:
                return f"{name} {version(name)}"
            except PackageNotFoundError:
                continue
        return "not installed"

    found = {"torch": f"torch {torch.__version__}", "compile": f"torch {torch.__version__} (inductor)",
             "onnxruntime": package("onnxruntime", "onnxruntime-gpu"), "tensorrt": package("tensorrt")}
    return {runtime: found[runtime] for runtime in runtimes}
