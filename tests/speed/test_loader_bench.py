"""The format and loader study (tools/bench_loader.py): a tiny run end to end, the ratio and goal arithmetic,
and the same-spans property of the rows that share spans."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from vmb.cli.bench_loader import main as bench_loader
from vmb.config import load_config
from vmb.data.prepare.formats import CANDIDATES
from vmb.data.loader import clip_spec_from_cfg
from vmb.data.video import decode_clip, full_frame
from vmb.speed.loader.cells import Cell, key_of, time_cells
from vmb.speed.loader.clips import ClipSource, prepare_clips
from vmb.speed.loader.options import build_parser, check_args
from vmb.speed.loader.pipelines import PIPELINES, SHARED_SPANS, Spans, naive_pyav, torchcodec_clip
from vmb.speed.loader.study import compute_ratios, goal_checks, run_study

FORMAT = "intra_fastdecode"  # the prepared format's settings, cheap to encode
# 3 s clips: longer than a 16x5 clip at 30 fps (2.67 s), so spans really are random.
TINY = ["--clips", "2", "--clip-seconds", "3", "--size", "96x64", "--seconds", "0.2", "--rounds", "2",
        "--formats", FORMAT]


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """One tiny study over both benchmark configs: (printed lines, JSON document, recorded shared spans)."""
    tmp = tmp_path_factory.mktemp("bench_loader")
    args = build_parser().parse_args([*TINY, "--work-dir", str(tmp / "work"), "--json", str(tmp / "out.json")])
    check_args(args)
    lines, spans = [], []
    document = run_study(args, out=lines.append, record=lambda *call: spans.append(call))
    return "\n".join(lines), json.loads((tmp / "out.json").read_text()), spans, args, document


def test_tiny_run_prints_every_row_and_writes_json(tiny_study):
    text, document, _, args, returned = tiny_study
    assert "SYNTHETIC" in text
    assert set(document) == {"header", "formats", "rows", "goals"}
    assert document["header"]["synthetic"] is True and document["header"]["prepared_format"] == FORMAT
    assert [f["name"] for f in document["formats"]] == [FORMAT]
    assert document["formats"][0]["bytes_per_clip"] > 0
    rows = document["rows"]
    expected_keys = {"config", "arch", "sampling", "pipeline", "label", "format", "clock", "clips_per_s",
                     "round_rates", "clips_per_s_cpu", "clips_per_s_wall", "cpu_share", "clips", "error",
                     "bytes_per_clip", "x_bound_source", "x_bound_same_format", "x_pytorchvideo_same_format"}
    for row in rows:
        assert set(row) == expected_keys
        assert row["error"] is None, row
        assert row["clips_per_s"] > 0 and len(row["round_rates"]) == args.rounds
        assert row["clock"] == "cpu" and row["clips_per_s"] == row["clips_per_s_cpu"]
        assert row["clips"] >= args.rounds and 0 < row["cpu_share"] < 1.5
    for config in ("X3D_M", "MVIT_B_16x4"):
        pipelines = {r["pipeline"] for r in rows if r["config"] == config}
        assert set(SHARED_SPANS) | {"vmb_train"} <= pipelines
        assert f"== {config} " in text
    # MViT's recipe has RandAugment and erasing: its device-side augment gets a row (vmb/data/augment.py).
    assert {r["config"] for r in rows if r["pipeline"] == "augment_device"} == {"MVIT_B_16x4"}
    for row in rows:
        assert any(PIPELINES[row["pipeline"]] in line and row["format"] in line for line in text.splitlines())
    bound = {r["config"]: r for r in rows if r["pipeline"] == "pyav_bound"}
    for row in rows:
        if row["pipeline"] != "augment_device":
            assert row["x_bound_same_format"] == pytest.approx(row["clips_per_s"] / bound[row["config"]]["clips_per_s"])
            assert row["x_bound_source"] is None  # source-like clips not in this run
    assert [g["status"] for g in document["goals"]][0] == "n/a"
    assert all(g["status"] in ("PASS", "FAIL") for g in document["goals"][1:])
    assert "goal checks" in text and "JSON written" in text
    assert json.loads(json.dumps(returned)) == document


def test_shared_span_rows_decode_the_same_spans(tiny_study):
    _, _, calls, _, _ = tiny_study
    by_config = defaultdict(lambda: defaultdict(dict))  # config -> (clip, rep) -> pipeline -> times
    for config, pipeline, fmt, clip, rep, times in calls:
        seen = by_config[config][(clip, rep)]
        assert seen.setdefault(pipeline, times) == times  # a pipeline sees one span per (clip, rep)
    assert set(by_config) == {"X3D_M", "MVIT_B_16x4"}
    for config, keys in by_config.items():
        assert {p for spans in keys.values() for p in spans} == set(SHARED_SPANS)
        for key, spans in keys.items():
            assert len({tuple(t) for t in spans.values()}) == 1, (config, key, spans)
        # every pipeline timed the first keys of the common sequence: clips in order, then the next repetition
        for counter in range(2):
            assert set(keys[key_of(counter, 2)]) == set(SHARED_SPANS)
        starts = {spans[SHARED_SPANS[0]][0] for key, spans in keys.items() if SHARED_SPANS[0] in spans}
        assert len(starts) > 1  # the spans are random, not all the same


def test_decoders_return_the_same_frames(tiny_study):
    """The bare PyAV bound, naive PyAV and torchcodec decode the same instants to the same frames."""
    _, _, _, args, _ = tiny_study
    source = ClipSource(num_clips=2, width=96, height=64, seconds=3.0, fps=30, seed=0)
    logged = []
    sets, durations = prepare_clips(source, [CANDIDATES[FORMAT]], Path(args.work_dir), log=logged.append)
    assert logged == []  # the encodings of the run are reused
    spec = clip_spec_from_cfg(load_config("configs/X3D_M.yaml"))
    spans = Spans(spec, tuple(durations), seed=0)
    path = str(sets[FORMAT].paths[1])
    times = spans.times(1, 3)
    bound = decode_clip(path, lambda _d: times, full_frame()).numpy()
    naive = naive_pyav(path, times)
    assert bound.shape == (16, 256, 384, 3) and np.array_equal(bound, naive)
    codec = torchcodec_clip(path, times).permute(0, 2, 3, 1).float()
    distance = (codec[:, None] - torch.from_numpy(bound)[None].float()).abs().mean(dim=(2, 3, 4))
    assert distance.argmin(dim=1).tolist() == list(range(16))  # torchcodec's frame i is PyAV's frame i


def test_time_cells_interleaves_and_keeps_errors():
    calls = []

    def fn(name):
        def run(clip, rep):
            calls.append((name, clip, rep))
            if name == "broken" and rep == 0:
                raise ValueError("cannot read\nthis")
            sum(range(2000))
        return run

    cells = [Cell("C", "x3d", p, "f", fn(p)) for p in ("a", "b", "broken")]
    time_cells(cells, num_clips=3, seconds=0.03, rounds=3, clock="wall")
    a, b, broken = cells
    assert broken.error == "ValueError: cannot read" and broken.rounds == []
    assert calls[:3] == [("a", 0, 1_000_000), ("b", 0, 1_000_000), ("broken", 0, 1_000_000)]  # warm-ups first
    for cell in (a, b):
        assert len(cell.rounds) == 3 and sum(r[0] for r in cell.rounds) == cell.clips
        assert all(wall >= 0.01 for _, wall, _ in cell.rounds)
        keys = [(clip, rep) for name, clip, rep in calls[3:] if name == cell.pipeline]
        assert keys == [key_of(i, 3) for i in range(cell.clips)]
        assert cell.rates("wall") == [made / wall for made, wall, _ in cell.rounds]
    # each round starts one cell further on: (a, b), (b, [broken,] a), ([broken,] a, b)
    (n1, n2, n3), (m1, m2, m3) = ([r[0] for r in cell.rounds] for cell in (a, b))
    order = [name for name, _, rep in calls if rep != 1_000_000 and name != "broken"]
    assert order == ["a"] * n1 + ["b"] * (m1 + m2) + ["a"] * (n2 + n3) + ["b"] * m3


def _row(config, arch, pipeline, fmt, rate):
    return {"config": config, "arch": arch, "pipeline": pipeline, "format": fmt, "clips_per_s": rate}


def test_ratio_and_goal_arithmetic():
    rows = [
        _row("X", "x3d", "pyav_bound", "source_like", 10.0),
        _row("X", "x3d", "pyav_bound", "prep", 20.0),
        _row("X", "x3d", "pytorchvideo", "prep", 8.0),
        _row("X", "x3d", "vmb_train", "prep", 26.0),
        _row("M", "mvit", "pyav_bound", "source_like", 12.0),
        _row("M", "mvit", "pyav_bound", "prep", 30.0),
        _row("M", "mvit", "pytorchvideo", "prep", 10.0),
        _row("M", "mvit", "vmb_train", "prep", 23.0),
        _row("M", "mvit", "augment_device", "prep", 50.0),
        _row("M", "mvit", "torchcodec", "gop16", 5.0),  # no bound / PyTorchVideo on gop16: no ratios
    ]
    out = {(r["config"], r["pipeline"], r["format"]): r for r in compute_ratios(rows)}
    x3d = out["X", "vmb_train", "prep"]
    assert x3d["x_bound_source"] == pytest.approx(2.6)
    assert x3d["x_bound_same_format"] == pytest.approx(1.3)
    assert x3d["x_pytorchvideo_same_format"] == pytest.approx(3.25)
    mvit = out["M", "vmb_train", "prep"]
    assert mvit["x_bound_source"] == pytest.approx(23 / 12)  # within its own config
    assert mvit["x_bound_same_format"] == pytest.approx(23 / 30)
    assert mvit["x_pytorchvideo_same_format"] == pytest.approx(2.3)
    assert out["M", "augment_device", "prep"]["x_bound_same_format"] is None
    assert out["M", "torchcodec", "gop16"]["x_bound_same_format"] is None
    assert out["M", "torchcodec", "gop16"]["x_bound_source"] == pytest.approx(5 / 12)
    goals = goal_checks(list(out.values()), "prep")
    assert [g["status"] for g in goals] == ["PASS", "FAIL", "FAIL"]  # 2.6 >= 2.5; 0.77 < 0.8; mvit 2.3 < 3
    assert goals[2]["values"] == {"x3d": pytest.approx(3.25), "mvit": pytest.approx(2.3)}
    faster = [dict(r, clips_per_s=31.0) if (r["config"], r["pipeline"]) == ("M", "vmb_train") else r for r in rows]
    assert [g["status"] for g in goal_checks(compute_ratios(faster), "prep")] == ["PASS", "PASS", "PASS"]
    only_x3d = [r for r in compute_ratios(rows) if r["config"] == "X"]
    assert [g["status"] for g in goal_checks(only_x3d, "prep")] == ["PASS", "n/a", "n/a"]
    failed = [dict(r, clips_per_s=None) if r["pipeline"] == "pytorchvideo" else r for r in rows]
    assert goal_checks(compute_ratios(failed), "prep")[2]["status"] == "n/a"


def test_cli_reports_a_bad_format_in_one_line(capsys):
    assert bench_loader(["--formats", "nope", "--clips", "1"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --formats nope")
