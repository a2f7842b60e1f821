"""Export of a video model to ONNX (`tools/export.py`, and the deployment runtimes of bench_infer and test_net),
checked against PyTorch, with the model's identity in the file's metadata.

Exporter: torch.onnx.export's dynamo exporter (torch.export, then onnxscript's translation; torch 2.14's
default), not the legacy TorchScript one (dynamo=False). Both export X3D, MViT-B and SlowFast (two inputs) with
the same error against PyTorch (max abs difference below 2e-6 on random clips; the dynamo exporter also the rest
of the zoo: docs/SPEED.md), so the choice is upkeep: the TorchScript exporter is deprecated since torch 2.9 (a
DeprecationWarning on every call, no new operators), while the dynamo exporter is maintained and writes an
optimised graph (constants folded, eval BatchNorm folded into the convolutions, which int8 quantization needs:
vmb.speed.quantize). Its cost is a slower export (MViT-B about 45 s against 8 s on 2 CPU cores), paid once per
file. It writes opset 18 and newer
(MIN_OPSET; a lower --opset would silently come out as 18, so it is refused).

The file: one input per pathway, `clips` (batch, 3, T, H, W), or for a two-pathway model (SlowFast, whose
`model(...)` takes a list [slow, fast]) `pathway0` and `pathway1`; one output `logits` (batch, classes); the
batch axis is dynamic. Its metadata_props hold vmb.model, vmb.arch, vmb.input ("3x16x224x224", pathways
joined by " + "), vmb.num_classes and vmb.weights (what must match for the file to stand for a model:
`check_matches`), and vmb.opset, vmb.version, vmb.torch, vmb.exporter.

The check (`export_model`): ONNX Runtime's CPU logits against PyTorch's (eval mode) on the same clips; the
export fails unless max |onnx - torch| <= MAX_RELATIVE_ERROR x max |torch logit| over those clips. An
operator the exporter cannot translate is one line naming it (`ExportError`).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, Union

import torch

from vmb.errors import ConfigError, VMBError
from vmb.files import atomic_path, sha256_file

if TYPE_CHECKING:
    import onnxruntime
    from vmb.models.zoo import ZooModel

Clips = Union[torch.Tensor, list]  # what model(...) takes: (N, 3, T, H, W), or one such tensor per pathway

MIN_OPSET = 18  # the dynamo exporter's lowest
MAX_RELATIVE_ERROR = 1e-3  # export check: max abs difference / max abs logit
ZOO_SEED = 0  # a zoo model's random weights: built after torch.manual_seed(ZOO_SEED) (bench_infer, export)
CHECK_BATCH, CHECK_SEED = 2, 0  # the export check's clips when there is no data: CHECK_BATCH random clips
EXPORTER = "torch.onnx.export (dynamo)"
OUTPUT_NAME = "logits"
INSTALL_HINT = "pip install -e .[deploy]"


class DeployError(VMBError):
    """An ONNX file, export or runtime cannot do what was asked: one line naming the file, operator or runtime."""


class ExportError(DeployError):
    """The model cannot be exported to ONNX, or its export disagrees with PyTorch."""


@dataclass(frozen=True)
class ModelSpec:
    """What an ONNX file of a model must be: its name, family, inputs (each (C, T, H, W), no batch), classes and
    weights ("random, torch.manual_seed(0)" or "checkpoint sha256:<hex>")."""

    name: str
    arch: str
    input_shapes: tuple[tuple[int, ...], ...]
    num_classes: int
    weights: str

    @property
    def input_names(self) -> list[str]:
        return ["clips"] if len(self.input_shapes) == 1 else [f"pathway{i}" for i in range(len(self.input_shapes))]

    @property
    def input_text(self) -> str:
        return " + ".join("x".join(map(str, shape)) for shape in self.input_shapes)

    def identity(self) -> dict[str, str]:
        """The metadata values `check_matches` compares."""
        return {"model": self.name, "arch": self.arch, "input": self.input_text,
                "num_classes": str(self.num_classes), "weights": self.weights}

    def random_clips(self, batch_size: int, seed: int) -> Clips:
        """Deterministic N(0, 1) clips of this model's inputs, `batch_size` of each, from a generator seeded
        `seed` (the global RNG untouched)."""
        generator = torch.Generator().manual_seed(seed)
        clips = [torch.randn(batch_size, *shape, generator=generator) for shape in self.input_shapes]
        return clips[0] if len(clips) == 1 else clips


def random_check_clips(spec: ModelSpec) -> tuple[Clips, str]:
    """The clips an export of `spec`'s model is checked on when there is no data, and what they are."""
    return spec.random_clips(CHECK_BATCH, CHECK_SEED), f"random clips (seed {CHECK_SEED})"


def val_clips(cfg, count: int) -> tuple[torch.Tensor, str]:
    """The first `count` clips of the config's val split as test_net sees them (VMB's test loader, the config's
    TEST views, in this process), normalised; and what they are.

    Raises:
        ConfigError: the split has fewer clips.
        DataError: the split or a video cannot be read.
    """
    from vmb.data.transforms import normalize
    from vmb.engine.multiview import build_test_loader

    batches, found = [], 0
    for views, *_ in build_test_loader(cfg, 0, 1, torch.device("cpu"), 0):
        batches.append(views.flatten(0, 1))  # (N * V, C, T, H, W)
        found += len(batches[-1])
        if found >= count:
            break
    if found < count:
        raise ConfigError(f"--batch-size {count}: the val split of {cfg.DATA.PATH_TO_DATA_DIR} has only {found} "
                          "clips; use a smaller batch")
    return (normalize(torch.cat(batches)[:count], cfg.DATA.MEAN, cfg.DATA.STD),
            f"val clips of {cfg.DATA.PATH_TO_DATA_DIR} (VMB's test loader)")


def flat(clips: Clips) -> list[torch.Tensor]:
    """The input tensors of `clips`, in the ONNX file's input order."""
    return [clips] if isinstance(clips, torch.Tensor) else list(clips)


def zoo_spec(zoo_model: ZooModel, num_classes: int = 400) -> ModelSpec:
    """The spec of a zoo model with its random weights (`build_zoo_model`)."""
    shapes = tuple(tuple(t.shape[1:]) for t in flat(zoo_model.example_input(1)))
    return ModelSpec(zoo_model.name, zoo_model.arch, shapes, num_classes, f"random, torch.manual_seed({ZOO_SEED})")


def build_zoo_model(zoo_model: ZooModel) -> torch.nn.Module:
    """The zoo model with the random weights every deployment tool uses (seed ZOO_SEED), in eval mode."""
    torch.manual_seed(ZOO_SEED)
    return zoo_model.build().eval()


def config_spec(cfg, cfg_file: str, checkpoint: Path) -> ModelSpec:
    """The spec of a config's model with a checkpoint's weights, as test_net feeds it (the test crop)."""
    from vmb.engine.multiview import model_name

    crop = cfg.DATA.TEST_CROP_SIZE
    return ModelSpec(model_name(cfg, cfg_file), cfg.MODEL.ARCH, ((3, cfg.DATA.NUM_FRAMES, crop, crop),),
                     cfg.MODEL.NUM_CLASSES, f"checkpoint sha256:{sha256_file(checkpoint)[0]}")


def unsupported_op(message: str) -> str | None:
    """The operator an exporter's error names as one it cannot translate, or None."""
    for pattern in (r"No ONNX function found for <OpOverload\(op='([\w.]+)'",  # dynamo: no translation
                    r"call_function\[target=torch\.ops\.([\w.]+)\]",  # dynamo: the translation of a node failed
                    r"Exporting the operator '([\w:.]+)' to ONNX"):  # TorchScript exporter
        match = re.search(pattern, message)
        if match:
            return match[1]
    return None


def _summary(message: str) -> str:
    """The first line of the exporter's "## Exception summary" (the root cause), else of the message."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if "## Exception summary" in lines:
        lines = lines[lines.index("## Exception summary") + 1:] or lines
    return re.sub(r"^<class '[\w.]+'>: ", "", lines[0] if lines else "")[:200]


def _export(model: torch.nn.Module, spec: ModelSpec, example: Clips, opset: int | None):
    """torch.onnx.export (dynamo) of `model` with a dynamic batch axis -> its ONNXProgram."""
    batch = torch.export.Dim("batch", min=1)
    shapes = {0: batch} if isinstance(example, torch.Tensor) else [{0: batch}] * len(example)
    try:
        return torch.onnx.export(model, (example,), dynamo=True, opset_version=opset, input_names=spec.input_names,
                                 output_names=[OUTPUT_NAME], dynamic_shapes=(shapes,), verbose=False)
    except Exception as exc:  # the exporter raises its own types for every step (torch.export, translation, ...)
        op = unsupported_op(str(exc))
        what = f"operator {op} is not supported by the ONNX exporter" if op else "the ONNX exporter failed"
        raise ExportError(f"cannot export {spec.name} to ONNX: {what} ({_summary(str(exc))}; torch "
                          f"{torch.__version__})") from None


def open_session(path: Path, providers: Sequence = ("CPUExecutionProvider",),
                 threads: int | None = None) -> onnxruntime.InferenceSession:
    """An ONNX Runtime session of `path`; `threads` intra-op threads (default: torch's). A file it cannot load
    or an operator it does not implement is one line naming them (DeployError)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.log_severity_level = 3  # errors only: its warnings (unused initializers, ...) are not the user's
    try:
        return ort.InferenceSession(str(path), options, providers=list(providers))
    except Exception as exc:  # onnxruntime's pybind errors (Fail, InvalidGraph, NotImplemented, ...)
        text = str(exc)
        missing = re.search(r"Could not find an implementation for (\w+\(\d+\)) node with name '([^']*)'", text) \
            or re.search(r"([\w.]+:\w+)\(-?\d+\) is not a registered function/op()", text)
        if missing:
            raise DeployError(f"onnxruntime cannot run {path}: operator {missing[1]}"
                              + (f" (node {missing[2]!r})" if missing[2] else "") + " is not implemented by its "
                              f"{provider_name(providers[0])}") from None
        reason = re.sub(r"^\[ONNXRuntimeError\] : \d+ : ", "", text).splitlines()[0][:300]
        raise DeployError(f"onnxruntime cannot load {path}: {reason}") from None


def provider_name(provider: str | tuple) -> str:
    """The name of an ONNX Runtime provider given as a name or a (name, options) pair."""
    return provider if isinstance(provider, str) else provider[0]


def host_feeds(names: Sequence[str], clips: Clips) -> dict:
    """ONNX Runtime's feeds of `clips` for inputs `names`: float32 host arrays (views of contiguous tensors)."""
    return {name: t.detach().to("cpu", torch.float32).contiguous().numpy() for name, t in zip(names, flat(clips))}


def run_feeds(session: onnxruntime.InferenceSession, feeds: dict) -> torch.Tensor:
    """`session`'s logits of host `feeds`."""
    return torch.from_numpy(session.run([OUTPUT_NAME], feeds)[0])


@dataclass(frozen=True)
class ExportResult:
    """An export and its check: the file, its opset, the check's max abs difference and logit scale."""

    path: Path
    opset: int
    seconds: float
    max_abs_diff: float
    logit_scale: float
    check_clips: int
    check_source: str

    @property
    def bound(self) -> float:
        return MAX_RELATIVE_ERROR * self.logit_scale

    def describe(self) -> dict:
        """What the tools record about it (JSON; not the file, which they make in a temporary folder)."""
        return {"opset": self.opset, "exporter": EXPORTER, "export_s": self.seconds,
                "max_abs_diff": self.max_abs_diff, "logit_scale": self.logit_scale, "bound": self.bound,
                "check_clips": self.check_clips, "check_source": self.check_source}


def check_opset(opset: int | None) -> None:
    """Raise a one-line ExportError unless the exporter writes `opset` (None: its default)."""
    if opset is not None and opset < MIN_OPSET:
        raise ExportError(f"--opset {opset}: the dynamo exporter writes opset {MIN_OPSET} and newer; use "
                          f"--opset {MIN_OPSET} or more")


def export_model(model: torch.nn.Module, spec: ModelSpec, path: Path, clips: Clips, check_source: str,
                 opset: int | None = None) -> ExportResult:
    """Export `model` (on the CPU, put in eval mode) to `path` (written atomically, only once checked), with
    `clips` as the example input and the check's input (module docstring).

    Raises:
        ExportError: an operator the exporter cannot translate, an opset other than asked, or logits off by
            more than the bound.
    """
    check_opset(opset)
    model.eval()
    start = time.perf_counter()
    program = _export(model, spec, clips, opset)
    written = program.model.opset_imports.get("", 0)
    if opset is not None and written != opset:
        raise ExportError(f"--opset {opset}: the exporter wrote opset {written}; use --opset {written}")
    program.model.metadata_props.update(
        {f"vmb.{key}": value for key, value in spec.identity().items()}
        | {"vmb.opset": str(written), "vmb.version": _vmb_version(), "vmb.torch": torch.__version__,
           "vmb.exporter": EXPORTER})
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        program.save(tmp, external_data=False)
        seconds = time.perf_counter() - start
        with torch.inference_mode():
            expected = model(clips).float()
        session = open_session(tmp)
        got = run_feeds(session, host_feeds([i.name for i in session.get_inputs()], clips))
        diff, scale = float((got - expected).abs().max()), float(expected.abs().max())
        if not diff <= MAX_RELATIVE_ERROR * scale:  # also false for NaN
            raise ExportError(f"the ONNX export of {spec.name} disagrees with PyTorch: max abs difference {diff:.3g} "
                              f"on {len(flat(clips)[0])} {check_source}, over the bound {MAX_RELATIVE_ERROR:g} x max "
                              f"|logit| {scale:.3g}; nothing written to {path}")
    return ExportResult(path, written, seconds, diff, scale, len(flat(clips)[0]), check_source)


def _vmb_version() -> str:
    import vmb

    return vmb.__version__


def read_metadata(path: Path) -> dict[str, str]:
    """The vmb.* metadata of the ONNX file at `path`, without the prefix.

    Raises:
        DeployError: no such file, or not an ONNX model.
    """
    import onnx

    if not path.is_file():
        raise DeployError(f"ONNX file {path} not found; write it with tools/export.py")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and others
        raise DeployError(f"{path} is not an ONNX model ({type(exc).__name__}); write it with tools/export.py") \
            from None
    return {p.key[4:]: p.value for p in model.metadata_props if p.key.startswith("vmb.")}


def check_matches(path: Path, spec: ModelSpec, export_hint: str) -> dict[str, str]:
    """The metadata of `path` if it is an export of `spec`'s model (same name, family, input shape, classes and
    weights), else a one-line DeployError naming the file and the first difference; `export_hint` is the command
    that writes the right file."""
    found = read_metadata(path)
    if not found:
        raise DeployError(f"{path} has no VMB metadata (vmb.model, vmb.input, ...): it was not written by "
                          f"tools/export.py; export it with {export_hint}")
    for key, expected in spec.identity().items():
        if found.get(key) != expected:
            raise DeployError(f"{path} is an ONNX file of another model: its {key} is {found.get(key)!r}, this "
                              f"model's is {expected!r}; export it with {export_hint}")
    return found
