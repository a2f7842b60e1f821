"""Optimizer construction and the learning-rate schedule (a pure function of the fractional epoch)."""
from __future__ import annotations

import math

import torch
from fvcore.common.config import CfgNode


def lr_at(epoch: float, base_lr: float, max_epoch: float, warmup_epochs: float, warmup_start_lr: float,
          end_lr: float, cosine_after_warmup: bool) -> float:
    """Learning rate at fractional epoch `epoch`: linear warm-up from `warmup_start_lr`, then half-cosine
    decay to `end_lr` at `max_epoch` (over [warmup, max] if `cosine_after_warmup`, else over [0, max])."""

    def cosine(e: float) -> float:
        offset = warmup_epochs if cosine_after_warmup else 0.0
        progress = (e - offset) / (max_epoch - offset)
        return end_lr + (base_lr - end_lr) * (math.cos(math.pi * progress) + 1.0) / 2.0

    if epoch < warmup_epochs:
        return warmup_start_lr + (cosine(warmup_epochs) - warmup_start_lr) * epoch / warmup_epochs
    return cosine(epoch)


def lr_schedule(cfg: CfgNode):
    """`epoch -> lr` with the SOLVER.* values of `cfg` bound."""
    s = cfg.SOLVER

    def schedule(epoch: float) -> float:
        return lr_at(epoch, s.BASE_LR, s.MAX_EPOCH, s.WARMUP_EPOCHS, s.WARMUP_START_LR, s.COSINE_END_LR,
                     s.COSINE_AFTER_WARMUP)

    return schedule


def param_groups(model: torch.nn.Module, weight_decay: float, bn_weight_decay: float,
                 zero_wd_1d: bool) -> list[dict]:
    """Parameters split by weight decay: batch-norm parameters get `bn_weight_decay`; with `zero_wd_1d`
    every 1-D parameter (biases, norms, embeddings' scalars) gets none."""
    bn_types = (torch.nn.modules.batchnorm._BatchNorm,)
    bn_params = {id(p) for m in model.modules() if isinstance(m, bn_types) for p in m.parameters(recurse=False)}
    decay, no_decay, bn = [], [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        if id(param) in bn_params:
            bn.append(param)
        elif zero_wd_1d and param.ndim <= 1:
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0},
              {"params": bn, "weight_decay": 0.0 if zero_wd_1d else bn_weight_decay}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: torch.nn.Module, cfg: CfgNode) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov) or AdamW per SOLVER.OPTIMIZING_METHOD; the LR is set every iteration."""
    s = cfg.SOLVER
    groups = param_groups(model, s.WEIGHT_DECAY, cfg.BN.WEIGHT_DECAY, s.ZERO_WD_1D_PARAM)
    if s.OPTIMIZING_METHOD == "sgd":
        return torch.optim.SGD(groups, lr=s.BASE_LR, momentum=s.MOMENTUM, nesterov=s.NESTEROV)
    return torch.optim.AdamW(groups, lr=s.BASE_LR, betas=(0.9, 0.999))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
