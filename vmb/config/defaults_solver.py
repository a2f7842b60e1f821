"""Defaults for the optimizer and learning-rate schedule."""
from fvcore.common.config import CfgNode


def add_solver_defaults(cfg: CfgNode) -> None:
    cfg.SOLVER = CfgNode()
    cfg.SOLVER.OPTIMIZING_METHOD = "sgd"  # "sgd" or "adamw"
    cfg.SOLVER.BASE_LR = 0.1
    cfg.SOLVER.LR_POLICY = "cosine"
    cfg.SOLVER.COSINE_END_LR = 0.0
    # The cosine schedule spans MAX_EPOCH; a run that has not reached its target by then is aborted.
    cfg.SOLVER.MAX_EPOCH = 300
    cfg.SOLVER.MOMENTUM = 0.9
    cfg.SOLVER.NESTEROV = True
    cfg.SOLVER.WEIGHT_DECAY = 5e-5
    cfg.SOLVER.WARMUP_EPOCHS = 0.0
    cfg.SOLVER.WARMUP_START_LR = 0.01
    # True: the cosine starts at the end of warm-up (MViT); False: it spans [0, MAX_EPOCH] (X3D).
    cfg.SOLVER.COSINE_AFTER_WARMUP = False
    cfg.SOLVER.ZERO_WD_1D_PARAM = False
    # Clip the global L2 norm of the gradients to this value; 0 turns clipping off.
    cfg.SOLVER.CLIP_GRAD_L2NORM = 0.0
