"""The one precision rule (vmb.engine.precision), as every tool applies it: fp16 only on CUDA, bf16 on a GPU only
where it is native (never emulated), AMP a CUDA setting."""
from __future__ import annotations

import pytest
import torch

from vmb.config import load_config
from vmb.engine import multiview, precision
from vmb.engine.train import check_setup
from vmb.errors import ConfigError
from vmb.speed import infer, train_bench

CUDA = torch.device("cuda", 0)


@pytest.fixture
def gpu_without_native_bf16(monkeypatch):
    """A V100/T4 as torch sees it: bf16 "supported" through emulation only."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-32GB")


def test_emulated_bf16_is_refused_everywhere(gpu_without_native_bf16):
    why = precision.unsupported("bf16", CUDA)
    assert "Tesla V100-SXM2-32GB has no native bfloat16" in why and "emulate" in why
    with pytest.raises(ConfigError, match="--precision bf16: Tesla V100"):
        precision.check_precision("bf16", CUDA, "--precision bf16")
    assert precision.unsupported("fp16", CUDA) is None and precision.unsupported("fp32", CUDA) is None
    # test_net and bench_infer skip it with the same reason; bench_train and training refuse it.
    contexts, notes = multiview.precision_contexts(["fp32", "bf16"], CUDA)
    assert list(contexts) == ["fp32"] and notes == [f"bf16 skipped: {why}"]
    assert infer.unsupported is precision.unsupported
    cfg = load_config(None, ["TRAIN.MIXED_PRECISION", "True", "TRAIN.AMP_DTYPE", "bfloat16"])
    with pytest.raises(ConfigError, match="TRAIN.AMP_DTYPE bfloat16: Tesla V100"):
        precision.training_precision(cfg, CUDA)
    with pytest.raises(ConfigError, match="TRAIN.AMP_DTYPE bfloat16"):
        train_bench.pick_precision(None, cfg, CUDA)
    with pytest.raises(ConfigError, match="TRAIN.AMP_DTYPE bfloat16"):
        check_setup(cfg, CUDA)  # training: before anything is written


def test_native_bf16_runs(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert precision.unsupported("bf16", CUDA) is None
    cfg = load_config(None, ["TRAIN.MIXED_PRECISION", "True", "TRAIN.AMP_DTYPE", "bfloat16"])
    assert precision.training_precision(cfg, CUDA) == "bf16"


def test_fp16_needs_cuda_and_the_cpu_trains_fp32():
    cpu = torch.device("cpu")
    assert precision.unsupported("fp16", cpu) == "fp16 needs a CUDA device"
    assert precision.unsupported("bf16", cpu) is None
    amp = load_config(None, ["TRAIN.MIXED_PRECISION", "True", "TRAIN.AMP_DTYPE", "float16"])
    assert precision.training_precision(amp, cpu) == "fp32"  # AMP is a CUDA setting
    assert precision.training_precision(amp, CUDA) == "fp16"
    assert precision.training_precision(load_config(None), CUDA) == "fp32"


def test_autocast_and_layout():
    cpu = torch.device("cpu")
    with precision.autocast("bf16", cpu):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    with precision.autocast("fp32", cpu):
        assert not torch.is_autocast_enabled("cpu")
    assert precision.memory_format(CUDA) == torch.channels_last_3d
    assert precision.memory_format(cpu) == torch.contiguous_format
