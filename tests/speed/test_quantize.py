"""vmb.speed.quantize: the int8 QDQ quantization (which ops, which types per target, per-channel weights) runs under
ONNX Runtime close to fp32; calibration clips are reproducible (random, and drawn from the train split) with their
count and seed recorded; a calibration set too small is one line; the fp16 conversion is a valid model."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from vmb.config import load_config
from vmb.errors import ConfigError
from vmb.speed import quantize
from vmb.speed.export import ModelSpec, export_model, host_feeds, open_session, run_feeds
from vmb.speed.quantize import (MIN_CALIBRATION_CLIPS, RANDOM_CLIPS, Calibration, check_calibration_size,
                                convert_fp16, quantize_int8, random_calibration, split_calibration)

SPEC = ModelSpec("tiny", "test", ((3, 4, 12, 12),), 6, "random")


@pytest.fixture(scope="module")
def fp32_onnx(tmp_path_factory):
    """(path, model) of a small Conv3d + ReLU + pool + Linear model's checked export."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv3d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool3d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 6)).eval()
    path = tmp_path_factory.mktemp("quantize") / "tiny.onnx"
    export_model(model, SPEC, path, SPEC.random_clips(2, 0), "random clips")
    return path, model


def initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


@pytest.mark.parametrize("target, activation_type", [("cpu", np.uint8), ("tensorrt", np.int8)])
def test_int8_qdq_model_runs_close_to_fp32(fp32_onnx, tmp_path, target, activation_type, monkeypatch):
    path, model = fp32_onnx
    monkeypatch.setattr(quantize, "cpu_has_vnni", lambda: True)
    calibration = random_calibration(SPEC, 16, seed=3, batch_size=4)
    out = tmp_path / "int8.onnx"
    settings = quantize_int8(path, out, ["clips"], calibration, target)
    assert settings["calibration"] == {"clips": 16, "seed": 3, "batch_size": 4, "source": RANDOM_CLIPS}
    assert settings["ops"] == "Conv, MatMul, Gemm" and settings["weights"] == "int8, symmetric, per output channel"
    quantized = onnx.load(str(out))
    ops = [node.op_type for node in quantized.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops and "Relu" in ops
    conv = next(node for node in quantized.graph.node if node.op_type == "Conv")
    weight = next(node for node in quantized.graph.node if node.output[0] == conv.input[1])  # DequantizeLinear
    assert initializer(quantized, weight.input[0]).dtype == np.int8
    assert initializer(quantized, weight.input[1]).shape == (8,)  # one scale per output channel
    assert not initializer(quantized, weight.input[2]).any()  # symmetric: zero points 0
    activation = next(node for node in quantized.graph.node if node.op_type == "QuantizeLinear"
                      and node.input[0] == "clips")
    zero_point = initializer(quantized, activation.input[2])
    assert zero_point.dtype == activation_type
    if target == "tensorrt":
        assert zero_point == 0  # TensorRT's explicit quantization: symmetric activations
    clips = SPEC.random_clips(5, seed=9)  # unseen clips, another batch size
    got = run_feeds(open_session(out), host_feeds(["clips"], clips))
    with torch.inference_mode():
        expected = model(clips)
    assert got.shape == (5, 6)
    assert (got - expected).abs().max() <= 0.05 * expected.abs().max()


def test_reduce_range_on_x86_without_vnni(fp32_onnx, tmp_path, monkeypatch):
    path, _ = fp32_onnx
    monkeypatch.setattr(quantize, "cpu_has_vnni", lambda: False)
    monkeypatch.setattr(quantize.platform, "machine", lambda: "x86_64")
    settings = quantize_int8(path, tmp_path / "int8.onnx", ["clips"], random_calibration(SPEC, 8, 0, 1), "cpu")
    assert settings["weights"] == "int8, symmetric, per output channel, 7-bit (reduce_range: x86 without VNNI)"
    assert quantize_int8(path, tmp_path / "trt.onnx", ["clips"], random_calibration(SPEC, 8, 0, 1),
                         "tensorrt")["weights"] == "int8, symmetric, per output channel"


def test_random_calibration_is_reproducible():
    first, again, other = (random_calibration(SPEC, 10, seed, 4) for seed in (0, 0, 1))
    assert torch.equal(first.clips, again.clips) and not torch.equal(first.clips, other.clips)
    assert first.count == 10 and first.clips.shape == (10, 3, 4, 12, 12)
    assert [feed["clips"].shape[0] for feed in first.batches(["clips"])] == [1] * 10  # one at a time: memory


@pytest.mark.parametrize("count, batch, needed", [(4, 1, MIN_CALIBRATION_CLIPS), (7, 2, 8), (12, 16, 16)])
def test_a_calibration_set_too_small_is_one_line(count, batch, needed):
    with pytest.raises(ConfigError) as error:
        check_calibration_size(count, batch)
    assert str(error.value) == (f"--calib-clips {count}: too few clips to calibrate int8; give at least {needed} "
                                f"(at least 8, and at least one batch of {batch})")
    check_calibration_size(needed, batch)


def tiny_cfg(data_dir):
    return load_config("configs/smoke/X3D.yaml", ["DATA.PATH_TO_DATA_DIR", str(data_dir), "MODEL.NUM_CLASSES", "4",
                                                  "DATA.NUM_FRAMES", "4", "DATA.TEST_CROP_SIZE", "32"])


def test_train_split_calibration_is_drawn_reproducibly(tiny_videos_dir):
    cfg = tiny_cfg(tiny_videos_dir)
    first, again = (split_calibration(cfg, 8, seed=5, batch_size=2) for _ in range(2))
    assert isinstance(first, Calibration) and torch.equal(first.clips, again.clips)
    assert first.clips.shape == (8, 3, 4, 32, 32) and first.clips.dtype == torch.float32
    assert first.describe() == {"clips": 8, "seed": 5, "batch_size": 2,
                                "source": f"train split of {tiny_videos_dir} (centre clip, centre crop)"}
    assert not torch.equal(split_calibration(cfg, 8, seed=6, batch_size=2).clips, first.clips)
    with pytest.raises(ConfigError, match=f"--calib-clips 17: the train split \\({tiny_videos_dir}/train.csv\\) "
                                          "has only 16 videos; ask for at most that many"):
        split_calibration(cfg, 17, seed=5, batch_size=2)


def test_fp16_conversion_is_a_valid_model(fp32_onnx, tmp_path):
    path, model = fp32_onnx
    out = tmp_path / "fp16.onnx"
    convert_fp16(path, out)
    converted = onnx.load(str(out))
    onnx.checker.check_model(converted, full_check=True)  # topologically sorted, types consistent
    conv = next(node for node in converted.graph.node if node.op_type == "Conv")
    assert initializer(converted, conv.input[1]).dtype == np.float16
    assert converted.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # fp32 in and out
    clips = SPEC.random_clips(3, seed=2)
    got = run_feeds(open_session(out), host_feeds(["clips"], clips))
    with torch.inference_mode():
        expected = model(clips)
    assert got.dtype == torch.float32 and (got - expected).abs().max() <= 1e-2 * expected.abs().max()
