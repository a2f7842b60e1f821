"""Sizing: CPU cores per GPU to keep the data wait below 10 %, per model (SIZING_FORMULA), from the finished cells:
the per-core cell's clips/s per core and the synthetic-input training cell's GPU clips/s.
"""
from __future__ import annotations

import math
from typing import Sequence

from vmb.speed.system_check.plan import G_TRAIN, MODELS, Model
from vmb.speed.system_check.summaries import number

SIZING_HEADROOM = 0.9  # data wait below 10 %: the loaders deliver at least the GPU's rate over 0.9
SIZING_FORMULA = "cores per GPU = ceil(GPU clips/s / (0.9 * clips/s per core)) + 1 (the training process's own core)"


def _gpu_clips_per_s(cells: Sequence[dict], model: Model) -> tuple[float | None, str | None]:
    """(GPU training clips/s, where from): the model's synthetic-input training cell in its config's precision,
    else in fp32, if it measured any."""
    measured = {c["figures"]["precision"]: c for c in cells if c["group"] == G_TRAIN and c["status"] == "ok"
                and c["figures"].get("model") == model.name and (c["figures"].get("clips_per_s") or 0) > 0}
    own = next((c["figures"]["config_precision"] for c in measured.values()), None)
    for precision in (own, "fp32"):
        if precision in measured:
            return measured[precision]["figures"]["clips_per_s"], f"bench_train --synthetic {precision}"
    return None, None


def cores_per_gpu(gpu_clips_per_s: float, clips_per_s_per_core: float) -> int:
    """CPU cores one GPU needs to keep its data wait below 10 % (SIZING_FORMULA)."""
    return math.ceil(gpu_clips_per_s / (SIZING_HEADROOM * clips_per_s_per_core)) + 1


def sizing(cells: Sequence[dict], env: dict) -> dict:
    """Cores per GPU per model (SIZING_FORMULA) from the finished cells: the per-core cell's clips/s per core and
    the synthetic-input training cell's GPU clips/s (the config's precision, else fp32); where one is missing the
    verdict says "not computed: ..." with the reason."""
    per_core_cell = next((cell for cell in cells if cell["id"] == "per-core"), {})
    per_core = per_core_cell.get("figures", {}).get("per_core", {}) if per_core_cell.get("status") == "ok" else {}
    gpus = env.get("cuda_devices") or 0
    models, lines = {}, []
    for model in MODELS:
        core = (per_core.get(model.name) or {}).get("clips_per_s_per_core")
        gpu, source = _gpu_clips_per_s(cells, model)
        if gpu and core:
            cores = cores_per_gpu(gpu, core)
            verdict = f"{cores} cores per GPU"
        else:
            cores = None
            verdict = "not computed: no GPU clips/s" if not gpu else "not computed: no clips/s per core"
        models[model.name] = {"label": model.label, "gpu_clips_per_s": gpu, "gpu_source": source,
                              "clips_per_s_per_core": core, "cores_per_gpu": cores, "verdict": verdict}
        lines.append(f"{model.label}: {number(core)} clips/s per core, {number(gpu)} GPU clips/s, {verdict}")
    usable = env.get("usable_cores")
    here = round(usable / gpus, 1) if gpus and usable else None
    if here is not None:
        lines.append(f"this machine: {here:g} usable cores per GPU")
    note = None
    if per_core and per_core_cell["figures"].get("short_clips"):
        note = ("the clips/s per core come from synthetic clips shorter than the models' clip span (a small "
                "--budget-min): they repeat their last frame, so the figure is optimistic")
        lines.append(note)
    return {"formula": SIZING_FORMULA, "models": models, "usable_cores_per_gpu": here, "note": note,
            "line": "; ".join(lines)}
