"""The tools' outputs read into a cell's figures: bench_train's JSON (`bench_figures`), bench_infer's
(`infer_figures`), pytest's JUnit XML (`junit_summary`), the all-reduce bench's (`nccl_figures`) and a run's
result.json (`run_figures`). Each is a pure function of what the tool wrote.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET

NOT_MEASURED = "not measured"


def bench_figures(result: dict) -> dict:
    """tools/bench_train.py's JSON -> a cell's figures: clips/s, data wait (data_s mean / s_iter mean), peak memory,
    NVML GPU utilisation and host syncs per step (NOT_MEASURED where the JSON lacks them or holds null)."""
    s_iter, data_s = result.get("s_iter") or {}, result.get("data_s") or {}
    wait = data_s["mean"] / s_iter["mean"] if s_iter.get("mean") and "mean" in data_s else None
    figures = {"bench_status": result.get("status"), "clips_per_s": result.get("clips_per_s"),
               "data_wait_fraction": wait, "s_iter_mean": s_iter.get("mean"),
               "peak_memory_mib": result.get("peak_memory_mib"), "batch_size": result.get("batch_size"),
               "precision": result.get("precision"), "num_workers": result.get("num_workers"),
               "measured_iters": result.get("measured_iters"), "device": result.get("device")}
    for key in ("gpu_utilization_pct", "host_syncs_per_step"):
        value = result.get(key)
        figures[key] = NOT_MEASURED if value is None else value
    return figures


def infer_figures(document: dict) -> dict:
    """tools/bench_infer.py's JSON -> one row per model x batch x precision."""
    keys = ("model", "batch_size", "precision", "status", "note", "p50_ms", "p95_ms", "clips_per_s")
    return {"rows": [{key: row.get(key) for key in keys} for row in document.get("cells", [])],
            "interrupted": document.get("interrupted", False)}


OUTCOMES = ("passed", "failed", "skipped", "xfail", "xpass")
_WORST_FIRST = ("failed", "xpass", "xfail", "skipped", "passed")  # a test's outcome: the worst of its elements


def _first_line(text: str | None) -> str:
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[0].strip() if lines else ""


def junit_summary(xml_text: str) -> dict:
    """A pytest JUnit XML report -> per test (classname::name) its outcome and first message line, and the counts.

    Outcomes: failed (a <failure> or <error>), xpass (a strict xfail that passed: "[XPASS(strict)]"), xfail
    (<skipped type="pytest.xfail">), skipped, passed. A non-strict xfail that passes looks passed in JUnit XML."""
    tests = []
    for case in ET.fromstring(xml_text).iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            text = child.get("message") or child.text
            if child.tag in ("failure", "error"):
                xpass = (child.get("message") or "").startswith("[XPASS(strict)]")
                found = "xpass" if xpass else "failed"
            elif child.tag == "skipped":
                found = "xfail" if child.get("type") == "pytest.xfail" else \
                    "xpass" if "passes unexpectedly" in (child.get("message") or "") else "skipped"
            else:
                continue
            if _WORST_FIRST.index(found) < _WORST_FIRST.index(outcome):
                outcome, message = found, _first_line(text)
        tests.append({"test": f"{case.get('classname', '')}::{case.get('name', '')}", "outcome": outcome,
                      "message": message})
    return {"counts": {key: sum(t["outcome"] == key for t in tests) for key in OUTCOMES}, "tests": tests}


def nccl_figures(document: dict) -> dict:
    """vmb.speed.allreduce_bench's JSON -> the rows and the best bus bandwidth."""
    rows = document.get("rows", [])
    return {"world_size": document.get("world_size"), "backend": document.get("backend"), "rows": rows,
            "busbw_gbps": max((r["busbw_gbps"] for r in rows), default=None)}


def run_figures(result: dict) -> dict:
    """A run's result.json -> status, devices, training clips/s, data wait."""
    return {key: result.get(key) for key in ("status", "n_devices", "epochs", "train_clips_per_s",
                                             "data_wait_fraction", "num_workers")}
