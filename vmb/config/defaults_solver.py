"""Defaults for the optimizer and learning-rate schedule.

Every key has a comment (what it holds, its unit, its allowed values): vmb/config/doc.py reads them into
docs/CONFIG.md, and tests/config/test_config_doc.py fails on a key without one.
"""
from fvcore.common.config import CfgNode


def add_solver_defaults(cfg: CfgNode) -> None:
    # The optimizer and the learning rate as a function of the fractional epoch (vmb/engine/optim.py).
    cfg.SOLVER = CfgNode()
    cfg.SOLVER.OPTIMIZING_METHOD = "sgd"  # "sgd" (momentum, Nesterov) or "adamw" (betas 0.9, 0.999)
    # Learning rate the cosine decays from (at epoch 0, or at the end of warm-up with COSINE_AFTER_WARMUP); used
    # as given, not scaled by the batch size.
    cfg.SOLVER.BASE_LR = 0.1
    # Must be "cosine", the only schedule: the code always runs linear warm-up then half-cosine decay
    # (vmb.engine.optim.lr_at) without reading this key; it is validated and logged (opt_lr_schedule).
    cfg.SOLVER.LR_POLICY = "cosine"
    cfg.SOLVER.COSINE_END_LR = 0.0  # learning rate the cosine decays to at MAX_EPOCH
    # The cosine schedule spans MAX_EPOCH; a run that has not reached its target by then is aborted.
    cfg.SOLVER.MAX_EPOCH = 300
    cfg.SOLVER.MOMENTUM = 0.9  # SGD momentum (SOLVER.OPTIMIZING_METHOD sgd only)
    cfg.SOLVER.NESTEROV = True  # Nesterov momentum (SOLVER.OPTIMIZING_METHOD sgd only)
    # Weight decay of the parameters not exempted by BN.WEIGHT_DECAY or ZERO_WD_1D_PARAM (SGD: L2; AdamW: decoupled).
    cfg.SOLVER.WEIGHT_DECAY = 5e-5
    cfg.SOLVER.WARMUP_EPOCHS = 0.0  # epochs of linear warm-up (fractions allowed; 0: no warm-up)
    # Learning rate at epoch 0, rising linearly to the cosine's value at WARMUP_EPOCHS (unused without warm-up).
    cfg.SOLVER.WARMUP_START_LR = 0.01
    # True: the cosine starts at the end of warm-up (MViT); False: it spans [0, MAX_EPOCH] (X3D).
    cfg.SOLVER.COSINE_AFTER_WARMUP = False
    # No weight decay on any 1-D parameter (biases, norm weights, BatchNorm included, whatever BN.WEIGHT_DECAY says).
    cfg.SOLVER.ZERO_WD_1D_PARAM = False
    # Clip the global L2 norm of the gradients to this value; 0 turns clipping off.
    cfg.SOLVER.CLIP_GRAD_L2NORM = 0.0
