"""The numerics policy: what set_numerics sets on CUDA, leaves alone on the CPU, and reports."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from vmb.engine.numerics import set_numerics
from vmb.record.runlog import RunLog, find, read_events
from vmb.record.schema import NUMERICS

KEYS = {"cudnn_benchmark", "cudnn_deterministic", "tf32_matmul", "tf32_conv"}


@pytest.fixture
def restore_flags():
    """The global flags as they were before the test (the flags are process-wide; no GPU is touched)."""
    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
             torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
    yield
    (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
     torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision) = saved


def test_cuda_policy(restore_flags):
    torch.backends.cudnn.deterministic = True
    torch.backends.cuda.matmul.fp32_precision = "ieee"
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    numerics = set_numerics(torch.device("cuda", 0))  # sets flags only: runs without a GPU
    assert numerics == {"cudnn_benchmark": True, "cudnn_deterministic": False, "tf32_matmul": True,
                        "tf32_conv": True}
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    assert torch.backends.cuda.matmul.fp32_precision == torch.backends.cudnn.conv.fp32_precision == "tf32"


def test_legacy_and_new_tf32_getters_agree_after_the_policy():
    """TunableOp and the profiler read TF32 through torch's legacy getters, which raise on torch 2.14 once only the
    new fp32_precision API has set it. In a fresh process (the flags are process-wide): every getter answers,
    and they agree."""
    script = """
import json, torch
from vmb.engine.numerics import set_numerics
set_numerics(torch.device("cuda", 0))  # sets flags only: runs without a GPU
print(json.dumps({
    "legacy_matmul": torch.backends.cuda.matmul.allow_tf32,
    "legacy_precision": torch.get_float32_matmul_precision(),
    "legacy_cudnn": torch.backends.cudnn.allow_tf32,
    "new_matmul": torch.backends.cuda.matmul.fp32_precision,
    "new_conv": torch.backends.cudnn.conv.fp32_precision,
    "cpu_matmul": torch.backends.mkldnn.matmul.fp32_precision,
}))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == {
        "legacy_matmul": True, "legacy_precision": "high", "legacy_cudnn": True, "new_matmul": "tf32",
        "new_conv": "tf32", "cpu_matmul": "none"}  # the CPU's oneDNN matmuls stay IEEE


def test_cpu_sets_nothing_and_reports_the_same_keys(restore_flags):
    before = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.fp32_precision,
              torch.backends.cudnn.conv.fp32_precision)
    numerics = set_numerics(torch.device("cpu"))
    assert numerics == dict.fromkeys(KEYS, False)  # no cuDNN, no TF32 on the CPU
    assert (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.fp32_precision,
            torch.backends.cudnn.conv.fp32_precision) == before


def test_one_run_log_event(restore_flags, tmp_path):
    """The proposed log line: key vmb_numerics, the precision as value, the policy as metadata."""
    runlog = RunLog(tmp_path / "run_log.txt", enabled=True)
    runlog.event(NUMERICS, "amp_bfloat16", **set_numerics(torch.device("cuda", 0)))
    runlog.close()
    (event,) = find(read_events(tmp_path / "run_log.txt"), NUMERICS)
    assert event.value == "amp_bfloat16"
    assert {key: event.metadata[key] for key in KEYS} == dict.fromkeys(KEYS, True) | {"cudnn_deterministic": False}
