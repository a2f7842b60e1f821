"""Model size and cost: parameter count and fvcore FLOPs for one view."""
from __future__ import annotations

import logging

import torch
from fvcore.nn import FlopCountAnalysis


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def gflops_per_view(model: torch.nn.Module, num_frames: int, crop_size: int) -> float:
    """fvcore GFLOPs of one (1, 3, num_frames, crop_size, crop_size) clip (see `gflops`)."""
    return gflops(model, torch.zeros(1, 3, num_frames, crop_size, crop_size))


def gflops(model: torch.nn.Module, view: torch.Tensor | list[torch.Tensor]) -> float:
    """fvcore GFLOPs (one fused multiply-add counts as one FLOP, as in the X3D and MViT papers) of `model` on
    one view (the single argument of `model(...)`, batch 1), in eval mode."""
    was_training = model.training
    model.eval()
    logging.getLogger("fvcore").setLevel(logging.ERROR)  # fvcore warns about every op it does not count
    analysis = FlopCountAnalysis(model, (view,)).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    with torch.no_grad():
        total = analysis.total() / 1e9
    model.train(was_training)
    return total
