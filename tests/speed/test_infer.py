"""tools/bench_infer.py: the latency statistics on hand-computed samples, the timed loop, and the CLI end to end on
a tiny zoo model (JSON, CSV, report folder), with its failure paths: unknown model, unsupported precision, OOM,
Ctrl-C."""
from __future__ import annotations

import csv
import json
import re
import time
from dataclasses import dataclass, field

import pytest
import torch

from vmb.models import zoo
from vmb.cli.bench_infer import main
from vmb.speed.infer import time_iterations, unsupported
from vmb.speed.infer_report import CSV_FIELDS
from vmb.speed.latency import percentile, summarize

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class TinyNet(torch.nn.Module):
    """Conv3d + global pool + linear; counts its calls and can fail like a real run on one batch size."""

    def __init__(self, spec: TinyZooModel, num_classes: int):
        super().__init__()
        self.spec = spec
        self.conv = torch.nn.Conv3d(3, 4, 3)
        self.fc = torch.nn.Linear(4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, H, W) -> (N, num_classes)"""
        self.spec.calls.append((x.shape[0], torch.is_autocast_enabled("cpu"),
                                x.is_contiguous(memory_format=torch.channels_last_3d)))
        if x.shape[0] == self.spec.oom_batch:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        if x.shape[0] == self.spec.interrupt_batch:
            raise KeyboardInterrupt
        return self.fc(self.conv(x).mean((2, 3, 4)))


@dataclass(frozen=True)
class TinyZooModel:
    """A zoo entry (vmb.models.zoo.ZooModel's contract) whose model runs in milliseconds."""

    name: str = "tiny"
    arch: str = "tinynet"
    num_frames: int = 4
    crop_size: int = 12
    published_params_m: float = 0.0
    oom_batch: int | None = None
    interrupt_batch: int | None = None
    calls: list = field(default_factory=list)  # (batch size, autocast on, channels_last) of every forward

    def build(self, num_classes: int = 400) -> torch.nn.Module:
        return TinyNet(self, num_classes)

    def example_input(self, batch_size: int, device: torch.device | str = "cpu",
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.randn(batch_size, 3, self.num_frames, self.crop_size, self.crop_size, device=device, dtype=dtype)


@pytest.fixture
def tiny(monkeypatch):
    """Put a TinyZooModel (with the given failure points) into the zoo as 'tiny'; return it."""
    def add(**kwargs) -> TinyZooModel:
        model = TinyZooModel(**kwargs)
        monkeypatch.setitem(zoo.ZOO, "tiny", model)
        return model

    return add


def bench(tmp_path, *options: str) -> tuple[int, dict, list[dict]]:
    """Run the CLI on 'tiny' on the CPU with JSON and CSV output; (exit status, JSON document, CSV rows)."""
    status = main(["--models", "tiny", "--device", "cpu", "--warmup", "1", "--iters", "3",
                   "--json", str(tmp_path / "out.json"), "--csv", str(tmp_path / "out.csv"), *options])
    document = json.loads((tmp_path / "out.json").read_text())
    with (tmp_path / "out.csv").open(newline="") as f:
        return status, document, list(csv.DictReader(f))


def test_percentile_interpolates_linearly_between_ranks():
    samples = [7.0, 1.0, 4.0, 10.0, 2.0, 9.0, 3.0, 8.0, 6.0, 5.0]  # 1..10, unsorted
    assert percentile(samples, 50) == pytest.approx(5.5)  # rank 4.5: between 5 and 6
    assert percentile(samples, 95) == pytest.approx(9.55)  # rank 8.55: 9 + 0.55 * (10 - 9)
    assert percentile(samples, 99) == pytest.approx(9.91)  # rank 8.91
    assert percentile(samples, 0) == 1.0 and percentile(samples, 100) == 10.0
    assert percentile([2.0, 4.0], 95) == pytest.approx(3.9)  # rank 0.95: 2 + 0.95 * 2
    assert percentile([3.0], 99) == 3.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_summarize_mean_total_and_throughput():
    stats = summarize([float(ms) for ms in range(1, 11)], batch_size=4)  # 1..10 ms
    assert stats.iters == 10
    assert stats.mean_ms == pytest.approx(5.5)
    assert (stats.p50_ms, stats.p95_ms, stats.p99_ms) == pytest.approx((5.5, 9.55, 9.91))
    assert stats.total_s == pytest.approx(0.055)
    assert stats.clips_per_s == pytest.approx(4 * 10 / 0.055)  # 727.27 clips/s
    assert summarize([20.0, 30.0], 8).clips_per_s == pytest.approx(8 * 2 / 0.05)  # 320 clips/s


def test_timed_loop_excludes_warmup_and_keeps_to_the_budget():
    calls = []

    def step():  # the two warm-up calls are slow, the timed ones take 10 ms
        calls.append(None)
        time.sleep(0.1 if len(calls) <= 2 else 0.01)

    latencies = time_iterations(step, torch.device("cpu"), warmup=2, iters=3, seconds=None)
    assert len(calls) == 5 and len(latencies) == 3
    assert all(10 <= ms < 90 for ms in latencies)
    calls.clear()
    latencies = time_iterations(step, torch.device("cpu"), warmup=2, iters=None, seconds=0.05)
    assert 1 <= len(latencies) <= 5 and all(ms >= 10 for ms in latencies)  # stops once 50 ms have passed


def test_end_to_end_writes_table_json_csv_and_report(tiny, tmp_path, capsys):
    model = tiny()
    status, document, rows = bench(tmp_path, "--batch-sizes", "1,2", "--precision", "fp32,bf16",
                                   "--report", str(tmp_path / "report"))
    assert status == 0
    cells = document["cells"]
    assert [(c["batch_size"], c["precision"], c["status"]) for c in cells] == [
        (1, "fp32", "ok"), (1, "bf16", "ok"), (2, "fp32", "ok"), (2, "bf16", "ok")]
    # 1 warm-up + 3 timed forwards per cell, autocast on for bf16 only
    assert model.calls == [(b, p == "bf16", False) for b in (1, 2) for p in ("fp32", "bf16") for _ in range(4)]
    for c in cells:
        assert len(c["latencies_ms"]) == 3 and c["iters"] == 3
        stats = summarize(c["latencies_ms"], c["batch_size"])
        assert c["p95_ms"] == pytest.approx(stats.p95_ms) and c["clips_per_s"] == pytest.approx(stats.clips_per_s)
        assert c["clips_per_s"] == pytest.approx(c["batch_size"] * 3 / c["total_s"])
    assert document["interrupted"] is False
    header = document["header"]
    assert header["device"] == "cpu" and header["timer"] == "time.perf_counter" and header["warmup"] == 1
    assert header["models"]["tiny"]["input"] == "3x4x12x12"
    assert header["models"]["tiny"]["params_m"] == pytest.approx((3 * 4 * 27 + 4 + 4 * 400 + 400) / 1e6)
    assert list(rows[0]) == list(CSV_FIELDS)
    assert [(r["batch_size"], r["precision"]) for r in rows] == [("1", "fp32"), ("1", "bf16"), ("2", "fp32"),
                                                                 ("2", "bf16")]
    assert [float(r["p99_ms"]) for r in rows] == pytest.approx([c["p99_ms"] for c in cells])
    out = capsys.readouterr().out
    table = out[out.index("latency per forward pass and throughput"):].splitlines()[1:6]
    assert re.split(r"\s{2,}", table[0].strip()) == ["model", "batch", "runtime", "precision", "iters", "mean ms",
                                                     "p50 ms", "p95 ms", "p99 ms", "total s", "clips/s", "status"]
    assert table[4].split()[:6] == ["tiny", "2", "torch", "bf16", "3", f"{cells[3]['mean_ms']:.2f}"]
    assert table[4].split()[-2:] == [f"{cells[3]['clips_per_s']:.2f}", "ok"]
    report = tmp_path / "report"
    assert sorted(p.name for p in report.iterdir()) == ["latency.png", "report.html", "report.md", "table.png",
                                                        "throughput.png"]
    for png in report.glob("*.png"):
        assert png.read_bytes().startswith(PNG_MAGIC)
    markdown = (report / "report.md").read_text()
    assert f"| tiny | 2 | torch | bf16 | 3 | {cells[3]['mean_ms']:.2f} |" in markdown
    assert "![throughput per batch size](throughput.png)" in markdown


def test_channels_last_reaches_the_model(tiny, tmp_path):
    model = tiny()
    status, document, _ = bench(tmp_path, "--batch-sizes", "2", "--precision", "fp32", "--channels-last")
    assert status == 0 and document["header"]["channels_last"] is True
    assert model.calls and all(channels_last for _, _, channels_last in model.calls)


def test_unknown_model_lists_the_valid_ones(tiny, capsys):
    tiny()
    assert main(["--models", "tiny,nope", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown model 'nope'; valid: ") and "x3d_m" in err and "tiny" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("options, message", [
    (["--batch-sizes", "1,0"], "--batch-sizes 1,0: batch sizes must be at least 1"),
    (["--batch-sizes", "1,x"], "--batch-sizes 1,x: expected integers"),
    (["--precision", "fp32,fp8"], "--precision fp8: unknown; valid: fp32, bf16, fp16, int8"),
    (["--iters", "0"], "--iters and --seconds must be positive"),
])
def test_bad_options_are_one_line_errors(tiny, capsys, options, message):
    tiny()
    assert main(["--models", "tiny", "--device", "cpu", *options]) == 2
    assert capsys.readouterr().err.startswith(f"error: {message}")


def test_cuda_device_without_cuda(tiny, monkeypatch, capsys):
    tiny()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["--models", "tiny", "--device", "cuda"]) == 2
    assert capsys.readouterr().err == "error: --device cuda: torch sees no CUDA device; use --device cpu\n"


def test_unsupported_precision_is_skipped_and_the_run_goes_on(tiny, tmp_path, capsys):
    tiny()
    status, document, rows = bench(tmp_path, "--batch-sizes", "1", "--precision", "fp16,fp32")
    assert status == 0
    skipped, measured = document["cells"]
    assert (skipped["status"], skipped["note"]) == ("skipped", "fp16 needs a CUDA device")
    assert "p50_ms" not in skipped and measured["status"] == "ok" and measured["iters"] == 3
    assert rows[0]["status"] == "skipped" and rows[0]["p50_ms"] == ""
    assert "tiny batch 1 torch fp16: skipped (fp16 needs a CUDA device)" in capsys.readouterr().err


def test_bf16_skipped_on_a_cuda_device_without_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    assert unsupported("bf16", torch.device("cuda")).startswith("Tesla V100 has no native bfloat16")
    assert unsupported("fp16", torch.device("cuda")) is None
    assert unsupported("bf16", torch.device("cpu")) is None


def test_oom_is_reported_and_the_next_cell_measured(tiny, tmp_path, capsys):
    model = tiny(oom_batch=8)
    status, document, rows = bench(tmp_path, "--batch-sizes", "8,2", "--precision", "fp32")
    assert status == 0
    oom, measured = document["cells"]
    assert (oom["batch_size"], oom["status"], oom["note"]) == (8, "OOM", "batch 8 does not fit in memory")
    assert (measured["batch_size"], measured["status"], measured["iters"]) == (2, "ok", 3)
    assert [b for b, _, _ in model.calls] == [8, 2, 2, 2, 2]
    assert [r["status"] for r in rows] == ["OOM", "ok"]
    assert "OOM: batch 8 does not fit in memory" in capsys.readouterr().out


def test_compile_failure_skips_the_cell_with_one_line(tiny, tmp_path, monkeypatch):
    tiny()

    def broken_compile(model):
        def run(clips):
            raise torch._dynamo.exc.TorchDynamoException("backend 'inductor' failed\nlong trace")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    status, document, _ = bench(tmp_path, "--runtime", "compile", "--precision", "fp32", "--batch-sizes", "1")
    assert status == 0
    (cell,) = document["cells"]
    assert cell["status"] == "skipped"
    assert (cell["runtime"], cell["note"]) == ("compile", "torch.compile failed: TorchDynamoException: backend "
                                               "'inductor' failed")


def test_interrupt_keeps_the_finished_cells(tiny, tmp_path, capsys):
    tiny(interrupt_batch=2)
    status, document, rows = bench(tmp_path, "--batch-sizes", "1,2,4", "--precision", "fp32",
                                   "--report", str(tmp_path / "report"))
    assert status == 130
    assert document["interrupted"] is True
    finished, cut = document["cells"]
    assert (finished["batch_size"], finished["status"], len(finished["latencies_ms"])) == (1, "ok", 3)
    assert (cut["batch_size"], cut["status"]) == (2, "interrupted")
    assert [(r["batch_size"], r["status"]) for r in rows] == [("1", "ok"), ("2", "interrupted")]
    assert "VMB inference speed (INTERRUPTED: partial results)" in capsys.readouterr().out
    assert "INTERRUPTED" in (tmp_path / "report" / "report.md").read_text()


def test_unwritable_output_fails_before_measuring(tiny, tmp_path, capsys):
    model = tiny()
    (tmp_path / "a_file").write_text("")
    assert main(["--models", "tiny", "--device", "cpu", "--csv", str(tmp_path / "a_file" / "out.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write {tmp_path / 'a_file' / 'out.csv'} (") and len(err.splitlines()) == 1
    assert model.calls == []
