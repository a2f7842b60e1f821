"""Defaults for the model architectures (X3D, MViT) and batch norm."""
from fvcore.common.config import CfgNode


def add_model_defaults(cfg: CfgNode) -> None:
    cfg.MODEL = CfgNode()
    cfg.MODEL.ARCH = "x3d"  # a key of vmb.models.build.MODEL_REGISTRY
    cfg.MODEL.NUM_CLASSES = 20
    cfg.MODEL.DROPOUT_RATE = 0.5

    cfg.X3D = CfgNode()
    cfg.X3D.WIDTH_FACTOR = 2.0
    cfg.X3D.DEPTH_FACTOR = 2.2
    cfg.X3D.BOTTLENECK_FACTOR = 2.25
    cfg.X3D.DIM_C5 = 2048
    cfg.X3D.DIM_C1 = 12

    cfg.RESNET = CfgNode()
    cfg.RESNET.ZERO_INIT_FINAL_BN = True

    cfg.BN = CfgNode()
    cfg.BN.WEIGHT_DECAY = 0.0

    cfg.MVIT = CfgNode()
    cfg.MVIT.DEPTH = 16
    cfg.MVIT.EMBED_DIM = 96
    cfg.MVIT.NUM_HEADS = 1
    cfg.MVIT.PATCH_KERNEL = [3, 7, 7]
    cfg.MVIT.PATCH_STRIDE = [2, 4, 4]
    cfg.MVIT.PATCH_PADDING = [1, 3, 3]
    cfg.MVIT.MLP_RATIO = 4.0
    cfg.MVIT.QKV_BIAS = True
    cfg.MVIT.DROPPATH_RATE = 0.2
    cfg.MVIT.MODE = "conv"
    cfg.MVIT.CLS_EMBED_ON = True
    cfg.MVIT.SEP_POS_EMBED = True
    cfg.MVIT.DIM_MUL = [[1, 2.0], [3, 2.0], [14, 2.0]]
    cfg.MVIT.HEAD_MUL = [[1, 2.0], [3, 2.0], [14, 2.0]]
    cfg.MVIT.POOL_KVQ_KERNEL = [3, 3, 3]
    cfg.MVIT.POOL_KV_STRIDE_ADAPTIVE = [1, 8, 8]
    cfg.MVIT.POOL_Q_STRIDE = [[1, 1, 2, 2], [3, 1, 2, 2], [14, 1, 2, 2]]
