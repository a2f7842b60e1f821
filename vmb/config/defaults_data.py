"""Defaults for data: dataset location, clip sampling, augmentation, loading."""
from fvcore.common.config import CfgNode


def add_data_defaults(cfg: CfgNode) -> None:
    cfg.DATA = CfgNode()
    # Folder with train.csv / val.csv ("relative/path.mp4 label" per line).
    cfg.DATA.PATH_TO_DATA_DIR = "data/kinetics20"
    # Prefix joined to every CSV path (empty: paths are relative to PATH_TO_DATA_DIR).
    cfg.DATA.PATH_PREFIX = ""
    cfg.DATA.NUM_FRAMES = 16
    cfg.DATA.SAMPLING_RATE = 5
    # Frames are sampled on a TARGET_FPS time grid, whatever the file's own frame rate.
    cfg.DATA.TARGET_FPS = 30
    cfg.DATA.TRAIN_JITTER_SCALES = [256, 320]
    # Random-resized-crop (MViT recipe) when both are non-empty: area and aspect ranges.
    cfg.DATA.TRAIN_JITTER_SCALES_RELATIVE = []
    cfg.DATA.TRAIN_JITTER_ASPECT_RELATIVE = []
    cfg.DATA.TRAIN_CROP_SIZE = 224
    cfg.DATA.TEST_CROP_SIZE = 256
    cfg.DATA.RANDOM_FLIP = True
    cfg.DATA.MEAN = [0.45, 0.45, 0.45]
    cfg.DATA.STD = [0.225, 0.225, 0.225]
    # Training videos that fail to decode are replaced by another one, at most this many times in a row.
    cfg.DATA.NUM_RETRIES = 10
    # Video decoder: "pyav", "torchcodec", "torchcodec_cuda" or "dali" (a resource key; see docs/DATA.md).
    cfg.DATA.DECODING_BACKEND = "pyav"
    # The manifest fingerprint the data must have ("sha256:..."; empty: any). The pre-flight checks it
    # against PATH_TO_DATA_DIR/manifest.json before run_start; canonical configs fix it.
    cfg.DATA.FINGERPRINT = ""

    # The smoke benchmark's synthetic dataset, generated into PATH_TO_DATA_DIR on first use.
    cfg.SYNTHETIC = CfgNode()
    cfg.SYNTHETIC.ENABLE = False
    cfg.SYNTHETIC.TRAIN_PER_CLASS = 24
    cfg.SYNTHETIC.VAL_PER_CLASS = 8
    cfg.SYNTHETIC.SEED = 0

    # RandAugment and random erasing on training clips (MViT recipe), same op for every frame.
    cfg.AUG = CfgNode()
    cfg.AUG.ENABLE = False
    cfg.AUG.RAND_NUM_OPS = 4
    cfg.AUG.RAND_MAGNITUDE = 7.0  # timm's scale, 0-10 (10: each op's full range), as "rand-m7"
    cfg.AUG.RAND_MAGNITUDE_STD = 0.5  # per-op Gaussian noise on the magnitude, as "mstd0.5"
    cfg.AUG.RE_PROB = 0.0

    # Batch-level MixUp / CutMix with label smoothing (MViT recipe).
    cfg.MIXUP = CfgNode()
    cfg.MIXUP.ENABLE = False
    cfg.MIXUP.ALPHA = 0.8
    cfg.MIXUP.CUTMIX_ALPHA = 1.0
    cfg.MIXUP.LABEL_SMOOTH_VALUE = 0.1

    cfg.DATA_LOADER = CfgNode()
    # Decoding processes per training process: an integer >= 0 (0 decodes in the training loop) or "auto",
    # this process's share of the usable cores minus one (vmb.data.loader.resolve_num_workers).
    cfg.DATA_LOADER.NUM_WORKERS = "auto"
    cfg.DATA_LOADER.PIN_MEMORY = True
    cfg.DATA_LOADER.PREFETCH_FACTOR = 2
