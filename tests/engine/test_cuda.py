"""On an NVIDIA GPU: the smoke recipes train and evaluate in fp32, bf16 AMP and fp16 AMP; the same weights
count on CUDA as on the CPU (up to what the precision allows), and in two NCCL processes exactly as in one;
a training step never makes the host wait for the device.

Every test is marked `cuda` and skipped without a GPU (the NCCL one without two). They use the tiny dataset
and the tiny-model overrides of tests/conftest.py on the smoke configs: seconds per run.
"""
from __future__ import annotations

import importlib.util
import os
import pathlib
from contextlib import AbstractContextManager, nullcontext

import pytest
import torch
from fvcore.common.config import CfgNode

from test_bn_sync import run_worker
from vmb.config import load_config
from vmb.data.augment import LEVEL_BINS, OP_NAMES
from vmb.data.loader import build_loaders
from vmb.data.transforms import normalize
from vmb.engine import train
from vmb.engine.evaluate import evaluate
from vmb.engine.mixup import build_mixup
from vmb.engine.numerics import set_numerics
from vmb.engine.optim import build_optimizer
from vmb.engine.step import model_input, train_step
from vmb.models.build import build_model

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(),
                                                   reason="needs an NVIDIA GPU (torch.cuda.is_available() is False)")]

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs" / "smoke"
ARCHS = {"x3d": CONFIGS / "X3D.yaml", "mvit": CONFIGS / "MVIT.yaml"}
PRECISIONS = {"fp32": (), "bf16": ("TRAIN.MIXED_PRECISION", "True", "TRAIN.AMP_DTYPE", "bfloat16"),
              "fp16": ("TRAIN.MIXED_PRECISION", "True", "TRAIN.AMP_DTYPE", "float16")}
VAL_SIZE = 7
# How far a CUDA logit may be from the CPU's fp32 one, as a share of the largest CPU logit. fp32 on CUDA
# runs TF32 convolutions and matmuls (vmb.engine.numerics: operands rounded to 10 mantissa bits, like fp16
# AMP's), bf16 AMP rounds to 7 bits. The same tiny models, trained 2 epochs, measured on the CPU under
# autocast: at most 0.13 % (fp16) and 1.2 % (bf16) of the largest logit; the bounds leave 4-8 times that.
TOLERANCE = {"fp32": 0.01, "fp16": 0.01, "bf16": 0.05}


def tiny_cfg(arch: str, precision: str, data_dir: pathlib.Path, out_dir: pathlib.Path, tiny_train_args,
             *extra: str) -> CfgNode:
    """The smoke config of `arch` with the tiny overrides, on one GPU in `precision`."""
    return load_config(ARCHS[arch], tiny_train_args(data_dir, out_dir, "NUM_GPUS", "1", "TENSORBOARD.ENABLE",
                                                    "False", *PRECISIONS[precision], *extra))


def autocast_for(cfg: CfgNode) -> AbstractContextManager:
    """The trainer's autocast for `cfg` on CUDA."""
    return torch.autocast("cuda", dtype=getattr(torch, cfg.TRAIN.AMP_DTYPE)) if cfg.TRAIN.MIXED_PRECISION \
        else nullcontext()


def val_logits(model: torch.nn.Module, loader, cfg: CfgNode, device: torch.device,
               autocast: AbstractContextManager) -> torch.Tensor:
    """(videos, classes) float32 logits on the CPU, computed as evaluate() computes them."""
    model.eval()
    with torch.inference_mode(), autocast:
        logits = [model(normalize(clips.to(device), cfg.DATA.MEAN, cfg.DATA.STD)).float().cpu()
                  for clips, *_ in loader]
    model.train()
    return torch.cat(logits)


def near_ties(logits: torch.Tensor, tolerance: float) -> int:
    """Videos whose top two logits are within 2 * `tolerance`: the only ones whose prediction may change
    when every logit moves by at most `tolerance`."""
    top2 = logits.topk(2, dim=1).values
    return int((top2[:, 0] - top2[:, 1] <= 2 * tolerance).sum())


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("arch", ARCHS)
def test_smoke_recipe_on_cuda_counts_like_the_cpu(arch, precision, tiny_videos_dir, tmp_path, tiny_train_args,
                                                  monkeypatch):
    """Up to two epochs, an evaluation after each, on the GPU; then the weights of the last evaluation,
    evaluated again on the CPU in fp32 and on the GPU in the run's precision: the same total, logits within
    TOLERANCE, and counts (the run's own too) that differ by no more than the videos that close a call."""
    evaluated = []  # (weights, (correct, total)) of each evaluation of the run

    def recording_evaluate(model, *args):
        counts = real_evaluate(model, *args)
        evaluated.append(({name: value.detach().cpu().clone() for name, value in model.state_dict().items()},
                          counts))
        return counts

    real_evaluate = train.evaluate
    monkeypatch.setattr(train, "evaluate", recording_evaluate)
    cfg = tiny_cfg(arch, precision, tiny_videos_dir, tmp_path / "run", tiny_train_args, "BENCHMARK.TARGET_TOP1",
                   "100", "SOLVER.MAX_EPOCH", "2", "TRAIN.EVAL_PERIOD", "1.0")
    result = train.run(cfg)  # stops after the first evaluation if that one counts 7 of 7
    assert (result["device_type"], result["n_devices"]) == ("cuda", 1)
    assert 1 <= len(evaluated) == len(result["evals"]) <= 2
    assert all(total == VAL_SIZE for _, (_, total) in evaluated)
    weights, (run_correct, _) = evaluated[-1]

    cuda = torch.device("cuda", 0)
    set_numerics(cuda)
    _, val_loader = build_loaders(cfg, 0, 1, torch.device("cpu"))
    cpu_model, cuda_model = build_model(cfg), build_model(cfg).to(cuda, memory_format=torch.channels_last_3d)
    cpu_model.load_state_dict(weights)
    cuda_model.load_state_dict(weights)
    on_cpu = evaluate(cpu_model, val_loader, torch.device("cpu"), cfg.DATA.MEAN, cfg.DATA.STD, nullcontext())
    on_cuda = evaluate(cuda_model, val_loader, cuda, cfg.DATA.MEAN, cfg.DATA.STD, autocast_for(cfg))
    cpu_logits = val_logits(cpu_model, val_loader, cfg, torch.device("cpu"), nullcontext())
    cuda_logits = val_logits(cuda_model, val_loader, cfg, cuda, autocast_for(cfg))

    assert on_cpu[1] == on_cuda[1] == VAL_SIZE
    tolerance = TOLERANCE[precision] * cpu_logits.abs().max().item()
    assert (cuda_logits - cpu_logits).abs().max().item() <= tolerance
    allowed = near_ties(cpu_logits, tolerance)
    assert abs(on_cuda[0] - on_cpu[0]) <= allowed
    assert abs(run_correct - on_cuda[0]) <= allowed


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices for two NCCL processes")
def test_two_nccl_processes_count_like_one(tiny_videos_dir, tmp_path, smoke_config, tiny_train_args, child_env):
    """tests/engine/test_bn_sync.py's check on GPUs: after training on different sub-batches, the averaged
    BatchNorm statistics give the same counts (and logits) split over two NCCL processes as in one."""
    env = dict(child_env)
    env.pop("CUDA_VISIBLE_DEVICES")
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
    # One clip per forward pass in both runs: the same kernels, so the same model gives the same logits.
    args = [str(smoke_config), *tiny_train_args(tiny_videos_dir, tmp_path / "out", "NUM_GPUS", "1",
                                                "TEST.BATCH_SIZE", "1")]
    weights = tmp_path / "synced.pt"
    two = run_worker(2, weights, args, env)
    assert two["world_size"] == 2 and two["total"] == VAL_SIZE
    assert two["spread_before"] > 1e-4 and two["spread_after"] == 0.0 and two["error_from_mean"] < 1e-6
    one = run_worker(1, weights, args, env)
    assert (one["correct"], one["total"]) == (two["correct"], two["total"])
    assert torch.allclose(torch.tensor(one["logits"]), torch.tensor(two["logits"]), rtol=1e-4, atol=1e-5)


def with_ops(params: torch.Tensor, ops: tuple[str, ...], first: int, num_ops: int) -> torch.Tensor:
    """`params` (N, P) in vmb.data.augment's layout with every op slot applied, at a mid level, cycling
    through `ops` from index `first`; the erasing fields are kept as drawn."""
    params = params.clone()
    for clip in range(params.shape[0]):
        for slot in range(num_ops):
            name = ops[(first + clip * num_ops + slot) % len(ops)]
            params[clip, 4 * slot:4 * slot + 4] = torch.tensor([1, OP_NAMES.index(name), LEVEL_BINS // 2, slot % 2])
    return params


def assert_steps_never_sync(arch: str, precision: str, ops: tuple[str, ...], data_dir: pathlib.Path,
                            out_dir: pathlib.Path, tiny_train_args) -> None:
    """The training loop's per-step work (vmb.engine.step: RandAugment with `ops`, erasing on every clip,
    normalisation, MixUp/CutMix, the optimisation step) on pinned batches: 3 steps under torch.cuda.set_sync_debug_mode
    ("error") after 2 of warm-up (cuDNN autotuning, allocation and normalize's constants happen once)."""
    num_ops = 2
    cfg = tiny_cfg(arch, precision, data_dir, out_dir, tiny_train_args, "DATA_LOADER.PIN_MEMORY", "True",
                   "AUG.ENABLE", "True", "AUG.RAND_NUM_OPS", str(num_ops), "AUG.RE_PROB", "1.0",
                   "MIXUP.ENABLE", "True")
    device = torch.device("cuda", 0)
    set_numerics(device)
    torch.manual_seed(0)
    model = build_model(cfg).to(device, memory_format=torch.channels_last_3d)
    optimizer = build_optimizer(model, cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=False)  # on only for fp16, which syncs by design
    autocast, mixup = autocast_for(cfg), build_mixup(cfg)
    train_loader, _ = build_loaders(cfg, 0, 1, device)
    batches = list(train_loader)
    assert len(batches) == 4 and batches[0][0].is_pinned()
    loss_sum = torch.zeros((), device=device)

    def step(index: int) -> None:
        nonlocal loss_sum
        clips, labels, _, augment = batches[index % len(batches)]
        augment = with_ops(augment, ops, index * len(labels) * num_ops, num_ops)
        clips, labels = model_input(clips, labels, augment, index, device, cfg.DATA.MEAN, cfg.DATA.STD, mixup)
        assert clips.is_contiguous(memory_format=torch.channels_last_3d)  # MixUp/CutMix keep the layout
        loss_sum += train_step(model, clips, labels, optimizer, scaler, autocast, cfg.SOLVER.CLIP_GRAD_L2NORM)

    for index in range(2):
        step(index)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for index in range(2, 5):
            step(index)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss_sum).item()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])  # fp16's GradScaler reads inf/NaN on the host: a sync
@pytest.mark.parametrize("arch", ARCHS)
def test_training_step_never_waits_for_the_device(arch, precision, tiny_videos_dir, tmp_path, tiny_train_args):
    """With every RandAugment op (each of them over the steps) and random erasing."""
    assert_steps_never_sync(arch, precision, OP_NAMES, tiny_videos_dir, tmp_path / "out", tiny_train_args)


@pytest.mark.parametrize("op", OP_NAMES)
def test_randaugment_op_never_waits_for_the_device(op, tiny_videos_dir, tmp_path, tiny_train_args):
    """Each op alone in every slot of every clip, with erasing: none waits for the device (vmb.data.augment
    applies them batched from one non-blocking copy per step; torchvision's kernels for the geometric ops and
    Sharpness built a small tensor with torch.tensor(..., device=cuda), a sync per clip and op)."""
    assert_steps_never_sync("x3d", "fp32", (op,), tiny_videos_dir, tmp_path / "out", tiny_train_args)


@pytest.fixture(scope="module")
def prepared_videos(tmp_path_factory) -> pathlib.Path:
    """A small Kinetics-shaped synthetic set in the prepared format (lossy all-intra 4:2:0, which NVDEC decodes):
    20 classes x 1 train and 1 val video of 2 s at 456x256."""
    from vmb.data.prepare.synthetic import ensure_synthetic_dataset, profile_spec

    return ensure_synthetic_dataset(tmp_path_factory.mktemp("prepared"), profile_spec("kinetics", 1, 1, 2.0),
                                    workers=os.cpu_count() or 1)


def prepared_cfg(data_dir: pathlib.Path, backend: str, *extra: str) -> CfgNode:
    return load_config(None, ["DATA.PATH_TO_DATA_DIR", str(data_dir), "MODEL.NUM_CLASSES", "20", "DATA.NUM_FRAMES", "8",
                              "DATA.SAMPLING_RATE", "4", "DATA.TRAIN_CROP_SIZE", "64", "DATA.TEST_CROP_SIZE", "64",
                              "DATA.TRAIN_JITTER_SCALES", "[64, 80]", "TRAIN.BATCH_SIZE", "4", "TEST.BATCH_SIZE", "6",
                              "AUG.ENABLE", "True", "AUG.RE_PROB", "0.5", "DATA_LOADER.NUM_WORKERS", "0",
                              "DATA.DECODING_BACKEND", backend, *extra])


GPU_BACKENDS = [pytest.param("torchcodec_cuda"),
                pytest.param("dali", marks=pytest.mark.skipif(importlib.util.find_spec("nvidia") is None
                                                              or importlib.util.find_spec("nvidia.dali") is None,
                                                              reason='needs NVIDIA DALI (pip install -e ".[dali]")'))]


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_device_decoding_gives_the_pyav_batches_on_the_gpu(prepared_videos, backend):
    """An epoch of training batches and the validation batches decoded on the GPU (vmb.data.device_loader): the
    same labels, failure counts and augmentation draws in the same order as PyAV's DataLoader, clips on the GPU
    within 3 grey levels (mean absolute difference per clip) of PyAV's."""
    from vmb.data.device_loader import DeviceBatches

    cuda = torch.device("cuda", 0)
    host_train, host_val = build_loaders(prepared_cfg(prepared_videos, "pyav"), 0, 1, torch.device("cpu"))
    gpu_train, gpu_val = build_loaders(prepared_cfg(prepared_videos, backend), 0, 1, cuda)
    assert isinstance(gpu_train, DeviceBatches) and isinstance(gpu_val, DeviceBatches)
    for host, gpu in ((host_train, gpu_train), (host_val, gpu_val)):
        expected, got = list(host), list(gpu)
        assert len(expected) == len(got) > 0
        for (clips, labels, failures, augment), (g_clips, g_labels, g_failures, g_augment) in zip(expected, got):
            assert g_clips.device == g_labels.device == cuda  # never copied to the host
            assert torch.equal(g_labels.cpu(), labels) and torch.equal(g_failures, failures)
            assert torch.equal(g_augment, augment)
            difference = (g_clips.cpu().float() - clips.float()).abs().mean(dim=(1, 2, 3, 4))
            assert difference.max().item() < 3.0, difference.tolist()


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_device_decoding_trains_and_counts_like_pyav(prepared_videos, tmp_path, backend, tiny_train_args):
    """A one-epoch run with each decoding backend: the GPU backend's run evaluates every validation video once and
    records its backend and no decode failures."""
    results = {}
    for name in ("pyav", backend):
        cfg = load_config(CONFIGS / "X3D.yaml", [
            *tiny_train_args(prepared_videos, tmp_path / name, "NUM_GPUS", "1", "MODEL.NUM_CLASSES", "20",
                             "BENCHMARK.TARGET_TOP1", "100", "SOLVER.MAX_EPOCH", "1", "TRAIN.EVAL_PERIOD", "1.0",
                             "TENSORBOARD.ENABLE", "False", "DATA.DECODING_BACKEND", name, "DATA_LOADER.NUM_WORKERS",
                             "0")])
        results[name] = train.run(cfg)
    for name, result in results.items():
        assert result["decoding_backend"] == name and result["decode_failures"] == 0
        assert len(result["evals"]) == 1 and result["device_type"] == "cuda"
