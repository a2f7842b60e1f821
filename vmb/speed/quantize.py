"""Reduced-precision ONNX files of an export (vmb.speed.export): post-training static int8 quantization, and the
fp16 conversion the CUDA runtimes run.

int8 (`quantize_int8`): ONNX Runtime's quantize_static in the QDQ format (QuantizeLinear / DequantizeLinear
pairs around the quantized ops, which ONNX Runtime's CPU kernels fuse into integer ones and TensorRT reads as
explicit quantization), after ORT's recommended pre-processing (quant_pre_process: shape inference and graph
optimisation). Calibration: MinMax ranges over `Calibration` clips, fed one at a time (CALIBRATION_FEED: memory).
Only Conv, MatMul and Gemm are quantized (QUANTIZED_OPS: the compute; residual adds, normalisation, softmax
and the rest stay fp32): with every op type quantized, MViT-B's int8 logits correlated 0.57 with fp32's (random
weights, random clips), with these three 0.998. Two flavours of the same calibration:

- target "cpu" (runtime onnxruntime): activations uint8, asymmetric, per tensor; weights int8, symmetric, per
  output channel; on an x86 CPU without VNNI the weights use 7 bits (reduce_range), as ORT advises against the
  int16 saturation of its non-VNNI kernels.
- target "tensorrt": activations and weights int8, symmetric (TensorRT's explicit quantization needs symmetric
  int8), weights per output channel.

A calibration set needs at least MIN_CALIBRATION_CLIPS clips and at least one batch (`check_calibration_size`).
The clips are drawn reproducibly: by test_net from the config's train split (`split_calibration`: `count` videos
chosen by a generator seeded `seed`, each as validation sees it: the centre clip, centre crop), by bench_infer
(zoo models, no data) as N(0, 1) random clips (`random_calibration`); both record count, seed and source.

fp16 (`convert_fp16`): onnxruntime.transformers.float16 (fp16 weights and compute, fp32 inputs and outputs,
ops unsafe in fp16 kept fp32), topologically re-sorted (the converter leaves input casts out of order, which the
ONNX standard forbids and ONNX's checker refuses).
"""
from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from vmb.errors import ConfigError
from vmb.files import atomic_path
from vmb.speed.export import Clips, ModelSpec, flat

MIN_CALIBRATION_CLIPS = 8
DEFAULT_CALIBRATION_CLIPS = 32  # bench_infer's and test_net's --calib-clips
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
# Clips per calibration run. The ranges (min and max over all clips) do not depend on how the clips are grouped,
# but the memory of ORT's calibration session grows with the batch: MViT-B calibrated at batch 8 took over 24 GiB
# (killed), at batch 1 6 GiB.
CALIBRATION_FEED = 1
RANDOM_CLIPS = "random clips, N(0, 1) (no data: zoo model)"  # the source of `random_calibration`'s clips


@dataclass(frozen=True)
class Calibration:
    """Calibration clips (N of each model input, normalised as the model takes them) for a model run at
    `batch_size` clips; they are fed CALIBRATION_FEED at a time."""

    clips: Clips
    batch_size: int
    source: str
    seed: int

    @property
    def count(self) -> int:
        return len(flat(self.clips)[0])

    def describe(self) -> dict:
        """What the tools record about it (JSON)."""
        return {"clips": self.count, "seed": self.seed, "batch_size": self.batch_size, "source": self.source}

    def batches(self, input_names: list[str]) -> list[dict]:
        """The calibration feeds: {input name: float32 array} of CALIBRATION_FEED clips each."""
        tensors = flat(self.clips)
        return [{name: t[start:start + CALIBRATION_FEED].contiguous().numpy() for name, t in zip(input_names, tensors)}
                for start in range(0, self.count, CALIBRATION_FEED)]


def check_calibration_size(count: int, batch_size: int, option: str = "--calib-clips") -> None:
    """Raise a one-line ConfigError unless `count` clips can calibrate a model run at `batch_size` clips."""
    needed = max(MIN_CALIBRATION_CLIPS, batch_size)
    if count < needed:
        raise ConfigError(f"{option} {count}: too few clips to calibrate int8; give at least {needed} (at least "
                          f"{MIN_CALIBRATION_CLIPS}, and at least one batch of {batch_size})")


def random_calibration(spec: ModelSpec, count: int, seed: int, batch_size: int) -> Calibration:
    """`count` deterministic N(0, 1) clips of `spec`'s inputs (for a model without data: a zoo model)."""
    check_calibration_size(count, batch_size)
    return Calibration(spec.random_clips(count, seed), batch_size, RANDOM_CLIPS, seed)


def split_calibration(cfg, count: int, seed: int, batch_size: int) -> Calibration:
    """`count` clips of the config's train split, the videos drawn by a generator seeded `seed`, each decoded as
    validation decodes (centre clip, centre crop) and normalised.

    Raises:
        ConfigError: too few clips asked for, or more than the split has.
        DataError: the split or a video cannot be read.
    """
    from vmb.backends import BACKENDS
    from vmb.data.kinetics import KineticsDataset
    from vmb.data.loader import clip_spec_from_cfg
    from vmb.data.transforms import normalize

    check_calibration_size(count, batch_size)
    device = torch.device("cuda") if BACKENDS[cfg.DATA.DECODING_BACKEND].on_device else torch.device("cpu")
    dataset = KineticsDataset(cfg.DATA.PATH_TO_DATA_DIR, "train", cfg.MODEL.NUM_CLASSES, clip_spec_from_cfg(cfg),
                              train=False, path_prefix=cfg.DATA.PATH_PREFIX, device=device)
    if len(dataset) < count:
        raise ConfigError(f"--calib-clips {count}: the train split ({Path(cfg.DATA.PATH_TO_DATA_DIR) / 'train.csv'}) "
                          f"has only {len(dataset)} videos; ask for at most that many")
    chosen = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:count].sort().values
    clips = torch.stack([dataset[(0, int(index))][0].cpu() for index in chosen])
    return Calibration(normalize(clips, cfg.DATA.MEAN, cfg.DATA.STD), batch_size,
                       f"train split of {cfg.DATA.PATH_TO_DATA_DIR} (centre clip, centre crop)", seed)


def cpu_has_vnni() -> bool:
    """Whether this x86 CPU has VNNI (AVX512-VNNI or AVX-VNNI), from /proc/cpuinfo; False where unknown."""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx512_vnni", "avx_vnni"} & set(flags.split()))


def quantize_int8(fp32_path: Path, out_path: Path, input_names: list[str], calibration: Calibration,
                  target: str) -> dict:
    """Write the int8 QDQ quantization of `fp32_path` (inputs `input_names`) for `target` (module docstring) to
    `out_path`; return its settings (JSON)."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, feeds: list[dict]) -> None:
            self._feeds = iter(feeds)

        def get_next(self) -> dict | None:
            return next(self._feeds, None)

    x86 = platform.machine().lower() in ("x86_64", "amd64")
    reduce_range = target == "cpu" and x86 and not cpu_has_vnni()
    pre = out_path.with_name(f"{out_path.stem}-preprocessed.onnx")
    try:
        quant_pre_process(str(fp32_path), str(pre))
        with atomic_path(out_path) as tmp:
            quantize_static(str(pre), str(tmp), Reader(calibration.batches(input_names)),
                            quant_format=QuantFormat.QDQ, op_types_to_quantize=list(QUANTIZED_OPS), per_channel=True,
                            reduce_range=reduce_range, weight_type=QuantType.QInt8,
                            activation_type=QuantType.QUInt8 if target == "cpu" else QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"ActivationSymmetric": target == "tensorrt", "WeightSymmetric": True})
    finally:
        pre.unlink(missing_ok=True)
    return {"method": "onnxruntime quantize_static, QDQ, MinMax calibration", "target": target,
            "ops": ", ".join(QUANTIZED_OPS),
            "activations": "uint8, asymmetric, per tensor" if target == "cpu" else "int8, symmetric, per tensor",
            "weights": "int8, symmetric, per output channel" + (", 7-bit (reduce_range: x86 without VNNI)"
                                                                 if reduce_range else ""),
            "calibration": calibration.describe()}


def convert_fp16(fp32_path: Path, out_path: Path) -> None:
    """Write the fp16 conversion of `fp32_path` (module docstring) to `out_path`."""
    import onnx
    import onnx_ir
    from onnxruntime.transformers.float16 import convert_float_to_float16

    converted = onnx_ir.serde.deserialize_model(convert_float_to_float16(onnx.load(str(fp32_path)),
                                                                         keep_io_types=True))
    converted.graph.sort()
    with atomic_path(out_path) as tmp:
        onnx.save(onnx_ir.serde.serialize_model(converted), str(tmp))
