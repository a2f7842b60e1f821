"""The model zoo for the speed tools: the video models users know, built by pytorchvideo's own builders
(`pytorchvideo.models.hub`), and TSN R50 / TSM R50 by vmb.models.tsn (pytorchvideo has none), never with
downloaded weights (random initialisation), each with its standard input: the frames and crop of one view as
PyTorchVideo's model zoo evaluates it (TSN, TSM: one view of MMAction2's, see vmb.models.tsn).

The benchmark's own models (configs/X3D_M.yaml, configs/MVIT_B_16x4.yaml) are built from their configs by
vmb.models.build; the zoo's x3d_m and mvit_b_16x4 are the same architectures as PyTorchVideo publishes them.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from vmb.errors import ConfigError
from vmb.models import tsn

with warnings.catch_warnings():  # fvcore, imported by pytorchvideo, calls the deprecated torch.jit.script
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    from pytorchvideo.models import hub

SLOWFAST_ALPHA = 4  # the fast pathway samples 4x the slow pathway's frames (SlowFast R50 8x8)
TORCHVISION_ARCHS = ("tsn", "tsm")  # built by vmb.models.tsn on torchvision's ResNet-50: builder(num_classes)


@dataclass(frozen=True)
class ZooModel:
    """One zoo model: its builder and the shape of one view."""

    name: str
    arch: str  # family: x3d, mvit, slow, slowfast, i3d, r2plus1d, csn, tsn, tsm
    num_frames: int  # frames of one view (SlowFast: the fast pathway's)
    crop_size: int  # height and width of one view
    published_params_m: float  # PyTorchVideo's model zoo table (TSN, TSM: MMAction2's), K400 head (millions)
    builder: Callable[..., torch.nn.Module]

    def build(self, num_classes: int = 400) -> torch.nn.Module:
        """The model with random weights and a `num_classes` head, in training mode, on the CPU."""
        if self.arch in TORCHVISION_ARCHS:
            return self.builder(num_classes)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            # pytorchvideo names the head's size head_num_classes for MViT, model_num_class elsewhere
            key = "head_num_classes" if self.arch == "mvit" else "model_num_class"
            model = self.builder(pretrained=False, **{key: num_classes})
        return FreshPathways(model) if self.arch == "slowfast" else model

    def example_input(self, batch_size: int, device: torch.device | str = "cpu",
                      dtype: torch.dtype = torch.float32) -> torch.Tensor | list[torch.Tensor]:
        """Random clips, the single argument of `model(...)`: (N, 3, T, H, W), or for SlowFast
        [slow (N, 3, T / alpha, H, W), fast (N, 3, T, H, W)]."""
        shape = (batch_size, 3, self.num_frames, self.crop_size, self.crop_size)
        clips = torch.randn(shape, device=device, dtype=dtype)
        if self.arch == "slowfast":
            return [clips[:, :, ::SLOWFAST_ALPHA].contiguous(), clips]
        return clips


class FreshPathways(torch.nn.Module):
    """A multi-pathway model called with a copy of its input list: pytorchvideo's SlowFast replaces the list's
    items with its stem's outputs, so calling it twice with the same list would feed features as clips."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pathways: list[torch.Tensor]) -> torch.Tensor:
        """[slow (N, 3, T / alpha, H, W), fast (N, 3, T, H, W)] -> logits (N, classes)."""
        return self.model(list(pathways))


ZOO: dict[str, ZooModel] = {m.name: m for m in (
    ZooModel("x3d_xs", "x3d", 4, 160, 3.79, hub.x3d_xs),
    ZooModel("x3d_s", "x3d", 13, 160, 3.79, hub.x3d_s),
    ZooModel("x3d_m", "x3d", 16, 224, 3.79, hub.x3d_m),
    ZooModel("x3d_l", "x3d", 16, 312, 6.15, hub.x3d_l),
    ZooModel("mvit_b_16x4", "mvit", 16, 224, 36.61, hub.mvit_base_16x4),
    ZooModel("slow_r50", "slow", 8, 224, 32.45, hub.slow_r50),
    ZooModel("slowfast_r50", "slowfast", 32, 224, 34.57, hub.slowfast_r50),
    ZooModel("i3d_r50", "i3d", 8, 224, 28.04, hub.i3d_r50),
    ZooModel("r2plus1d_r50", "r2plus1d", 16, 224, 28.11, hub.r2plus1d_r50),
    ZooModel("csn_r101", "csn", 32, 224, 22.21, hub.csn_r101),
    ZooModel("tsn_r50", "tsn", tsn.TSN_R50_SEGMENTS, 224, 24.33, tsn.tsn_r50),
    ZooModel("tsm_r50", "tsm", tsn.TSM_R50_SEGMENTS, 224, 24.33, tsn.tsm_r50),
)}


def get_zoo_model(name: str) -> ZooModel:
    """The zoo model called `name`.

    Raises:
        ConfigError: an unknown name, with the valid ones.
    """
    if name not in ZOO:
        raise ConfigError(f"unknown model {name!r}; valid: {', '.join(ZOO)}")
    return ZOO[name]
