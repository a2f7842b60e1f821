"""Defaults for the model architectures (X3D, MViT) and batch norm.

Every key has a comment (what it holds, its unit, its allowed values): vmb/config/doc.py reads them into
docs/CONFIG.md, and tests/config/test_config_doc.py fails on a key without one.
"""
from fvcore.common.config import CfgNode

# MODEL.ARCH's allowed values: the builders registered in vmb.models.build.MODEL_REGISTRY (a test checks that
# the two agree; the config cannot import the models, which need torch).
ARCHITECTURES = ("x3d", "mvit")


def add_model_defaults(cfg: CfgNode) -> None:
    # Which model, and what every architecture shares (vmb/models/build.py).
    cfg.MODEL = CfgNode()
    cfg.MODEL.ARCH = "x3d"  # one of ARCHITECTURES: "x3d" or "mvit"
    cfg.MODEL.NUM_CLASSES = 20  # classes of the classifier head (the dataset's labels are 0 to NUM_CLASSES - 1)
    cfg.MODEL.DROPOUT_RATE = 0.5  # dropout probability before the classifier head

    # X3D (MODEL.ARCH x3d), passed to pytorchvideo's create_x3d; the defaults are X3D-M.
    cfg.X3D = CfgNode()
    cfg.X3D.WIDTH_FACTOR = 2.0  # channel width expansion factor
    cfg.X3D.DEPTH_FACTOR = 2.2  # depth (blocks per stage) expansion factor
    cfg.X3D.BOTTLENECK_FACTOR = 2.25  # channel expansion of each block's 3x3x3 (bottleneck) conv
    cfg.X3D.DIM_C5 = 2048  # output channels of the head's last conv, before the classifier
    cfg.X3D.DIM_C1 = 12  # stem channels before the width expansion (X3D-M: 12 x 2.0 = 24)
    # Zero the weight of each bottleneck block's last BatchNorm, so every residual branch starts as the identity
    # (PySlowFast's RESNET.ZERO_INIT_FINAL_BN).
    cfg.X3D.ZERO_INIT_FINAL_BN = True

    # Batch norm.
    cfg.BN = CfgNode()
    # Weight decay of BatchNorm weights and biases (X3D; MViT has none); ignored (0) with SOLVER.ZERO_WD_1D_PARAM.
    cfg.BN.WEIGHT_DECAY = 0.0

    # MViT (MODEL.ARCH mvit), passed to pytorchvideo's create_multiscale_vision_transformers; the defaults are
    # MViT-B 16x4. Per-block lists name the block index first: [[block, value, ...], ...].
    cfg.MVIT = CfgNode()
    cfg.MVIT.DEPTH = 16  # transformer blocks
    cfg.MVIT.EMBED_DIM = 96  # embedding channels after the patch embedding
    cfg.MVIT.NUM_HEADS = 1  # attention heads of the first block
    cfg.MVIT.PATCH_KERNEL = [3, 7, 7]  # patch-embedding conv kernel, [T, H, W]
    cfg.MVIT.PATCH_STRIDE = [2, 4, 4]  # patch-embedding conv stride, [T, H, W]
    cfg.MVIT.PATCH_PADDING = [1, 3, 3]  # patch-embedding conv padding, [T, H, W]
    cfg.MVIT.MLP_RATIO = 4.0  # MLP hidden channels / embedding channels
    cfg.MVIT.QKV_BIAS = True  # learn a bias in the query/key/value projection
    cfg.MVIT.DROPPATH_RATE = 0.2  # stochastic depth: drop-path probability of the last block (linear from 0)
    # Pooling of queries, keys and values: "conv" (learned), "max" or "avg".
    cfg.MVIT.MODE = "conv"
    cfg.MVIT.CLS_EMBED_ON = True  # classify from a class token (False: from the average of the tokens)
    cfg.MVIT.SEP_POS_EMBED = True  # separate spatial and temporal position embeddings (False: one joint)
    cfg.MVIT.DIM_MUL = [[1, 2.0], [3, 2.0], [14, 2.0]]  # [[block, factor], ...]: embedding channels x factor there
    cfg.MVIT.HEAD_MUL = [[1, 2.0], [3, 2.0], [14, 2.0]]  # [[block, factor], ...]: attention heads x factor there
    cfg.MVIT.POOL_KVQ_KERNEL = [3, 3, 3]  # pooling kernel of queries, keys and values, [T, H, W]
    # Key/value pooling stride of the first block, [T, H, W]; divided by the query stride where queries are pooled.
    cfg.MVIT.POOL_KV_STRIDE_ADAPTIVE = [1, 8, 8]
    # [[block, T, H, W], ...]: query pooling stride at those blocks (the token grid shrinks there).
    cfg.MVIT.POOL_Q_STRIDE = [[1, 1, 2, 2], [3, 1, 2, 2], [14, 1, 2, 2]]
