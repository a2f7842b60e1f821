"""Model registry over pytorchvideo's builders: `MODEL.ARCH` names a builder taking the config.

Models output logits (no softmax head); input is a float clip of shape (N, C, T, H, W).
"""
from __future__ import annotations

import warnings
from typing import Callable

import torch
from fvcore.common.config import CfgNode
from fvcore.common.registry import Registry

with warnings.catch_warnings():  # fvcore, imported by pytorchvideo, calls the deprecated torch.jit.script
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    from pytorchvideo.models.resnet import BottleneckBlock
    from pytorchvideo.models.vision_transformers import create_multiscale_vision_transformers
    from pytorchvideo.models.x3d import create_x3d

MODEL_REGISTRY = Registry("MODEL")
MODEL_REGISTRY.__doc__ = "Builders of video models from a config: fn(cfg) -> nn.Module."


@MODEL_REGISTRY.register()
def x3d(cfg: CfgNode) -> torch.nn.Module:
    """X3D (Feichtenhofer 2020) with the recipe's widths, head dropout and zero-init of final BNs."""
    model = create_x3d(
        input_clip_length=cfg.DATA.NUM_FRAMES,
        input_crop_size=cfg.DATA.TRAIN_CROP_SIZE,
        model_num_class=cfg.MODEL.NUM_CLASSES,
        dropout_rate=cfg.MODEL.DROPOUT_RATE,
        width_factor=cfg.X3D.WIDTH_FACTOR,
        depth_factor=cfg.X3D.DEPTH_FACTOR,
        bottleneck_factor=cfg.X3D.BOTTLENECK_FACTOR,
        stem_dim_in=cfg.X3D.DIM_C1,
        head_dim_out=cfg.X3D.DIM_C5,
        head_activation=None,
        # The head pools globally, so the model accepts both the train and the (larger) test crop.
        head_output_with_global_average=True,
    )
    if cfg.X3D.ZERO_INIT_FINAL_BN:
        _zero_init_final_bn(model)
    return model


def _zero_init_final_bn(model: torch.nn.Module) -> None:
    """Start every residual branch as identity: zero the weight of each branch's last BatchNorm."""
    for module in model.modules():
        if isinstance(module, BottleneckBlock) and module.norm_c is not None:
            torch.nn.init.zeros_(module.norm_c.weight)


@MODEL_REGISTRY.register()
def mvit(cfg: CfgNode) -> torch.nn.Module:
    """Multiscale Vision Transformer (Fan 2021), conv pooling, with the recipe's drop path and head dropout."""
    m = cfg.MVIT
    return create_multiscale_vision_transformers(
        spatial_size=cfg.DATA.TRAIN_CROP_SIZE,
        temporal_size=cfg.DATA.NUM_FRAMES,
        cls_embed_on=m.CLS_EMBED_ON,
        sep_pos_embed=m.SEP_POS_EMBED,
        depth=m.DEPTH,
        patch_embed_dim=m.EMBED_DIM,
        conv_patch_embed_kernel=tuple(m.PATCH_KERNEL),
        conv_patch_embed_stride=tuple(m.PATCH_STRIDE),
        conv_patch_embed_padding=tuple(m.PATCH_PADDING),
        num_heads=m.NUM_HEADS,
        mlp_ratio=m.MLP_RATIO,
        qkv_bias=m.QKV_BIAS,
        droppath_rate_block=m.DROPPATH_RATE,
        pooling_mode=m.MODE,
        embed_dim_mul=[list(x) for x in m.DIM_MUL],
        atten_head_mul=[list(x) for x in m.HEAD_MUL],
        pool_q_stride_size=[list(x) for x in m.POOL_Q_STRIDE],
        pool_kv_stride_adaptive=list(m.POOL_KV_STRIDE_ADAPTIVE),
        pool_kvq_kernel=list(m.POOL_KVQ_KERNEL),
        head_dropout_rate=cfg.MODEL.DROPOUT_RATE,
        head_num_classes=cfg.MODEL.NUM_CLASSES,
    )


def build_model(cfg: CfgNode) -> torch.nn.Module:
    """The model `cfg.MODEL.ARCH` names, on the CPU, in training mode."""
    builder: Callable[[CfgNode], torch.nn.Module] = MODEL_REGISTRY.get(cfg.MODEL.ARCH)
    return builder(cfg)
