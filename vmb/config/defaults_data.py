"""Defaults for data: dataset location, clip sampling, augmentation, loading.

Every key has a comment (what it holds, its unit, its allowed values): vmb/config/doc.py reads them into
docs/CONFIG.md, and tests/config/test_config_doc.py fails on a key without one.
"""
from fvcore.common.config import CfgNode


def add_data_defaults(cfg: CfgNode) -> None:
    # The dataset, clip sampling and the crops of training and validation clips.
    cfg.DATA = CfgNode()
    # Folder with train.csv / val.csv ("relative/path.mp4 label" per line).
    cfg.DATA.PATH_TO_DATA_DIR = "data/kinetics20"
    # Prefix joined to every CSV path (empty: paths are relative to PATH_TO_DATA_DIR).
    cfg.DATA.PATH_PREFIX = ""
    cfg.DATA.NUM_FRAMES = 16  # frames per clip (the model's temporal input size)
    # Spacing of a clip's frames, in frames of the TARGET_FPS grid: a clip spans NUM_FRAMES * SAMPLING_RATE /
    # TARGET_FPS seconds.
    cfg.DATA.SAMPLING_RATE = 5
    # Frames are sampled on a TARGET_FPS time grid, whatever the file's own frame rate.
    cfg.DATA.TARGET_FPS = 30
    # Training scale jitter, [min, max] pixels: the short side is scaled to a random integer in it (inclusive),
    # then a random TRAIN_CROP_SIZE square is cut. Ignored when TRAIN_JITTER_SCALES_RELATIVE is set.
    cfg.DATA.TRAIN_JITTER_SCALES = [256, 320]
    # Random-resized-crop (MViT recipe) instead of scale jitter when non-empty: [min, max] fraction of the frame's
    # area; set together with TRAIN_JITTER_ASPECT_RELATIVE.
    cfg.DATA.TRAIN_JITTER_SCALES_RELATIVE = []
    # Random-resized-crop's [min, max] aspect ratio (width / height, drawn log-uniform); set together with
    # TRAIN_JITTER_SCALES_RELATIVE.
    cfg.DATA.TRAIN_JITTER_ASPECT_RELATIVE = []
    cfg.DATA.TRAIN_CROP_SIZE = 224  # side of the square training crop, pixels (also the model's input size)
    # Side of the square validation / test crop, pixels: the short side's central square resized to it.
    cfg.DATA.TEST_CROP_SIZE = 256
    cfg.DATA.RANDOM_FLIP = True  # flip training clips horizontally with probability 0.5
    # Per-channel (RGB) mean subtracted from pixels scaled to [0, 1].
    cfg.DATA.MEAN = [0.45, 0.45, 0.45]
    # Per-channel (RGB) standard deviation the centred pixels are divided by.
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
    # Generate the synthetic dataset into DATA.PATH_TO_DATA_DIR before run_start (untimed) if it is not there.
    cfg.SYNTHETIC.ENABLE = False
    cfg.SYNTHETIC.TRAIN_PER_CLASS = 24  # synthetic training videos per class
    cfg.SYNTHETIC.VAL_PER_CLASS = 8  # synthetic validation videos per class
    cfg.SYNTHETIC.SEED = 0  # seed of the synthetic dataset's content (an integer)

    # RandAugment and random erasing on training clips (MViT recipe), same op for every frame.
    cfg.AUG = CfgNode()
    cfg.AUG.ENABLE = False  # RandAugment and random erasing on training clips; False ignores the other AUG keys
    cfg.AUG.RAND_NUM_OPS = 4  # RandAugment ops drawn per clip (each applied with probability 0.5), as "n4"
    cfg.AUG.RAND_MAGNITUDE = 7.0  # timm's scale, 0-10 (10: each op's full range), as "rand-m7"
    cfg.AUG.RAND_MAGNITUDE_STD = 0.5  # per-op Gaussian noise on the magnitude, as "mstd0.5"
    cfg.AUG.RE_PROB = 0.0  # probability (0-1) of random erasing one box of a training clip; 0 turns it off

    # Batch-level MixUp / CutMix with label smoothing (MViT recipe).
    cfg.MIXUP = CfgNode()
    # Mix each training batch by MixUp or CutMix (one drawn per step) with smoothed labels; False ignores the
    # other MIXUP keys (hard labels, no smoothing).
    cfg.MIXUP.ENABLE = False
    cfg.MIXUP.ALPHA = 0.8  # MixUp's Beta(alpha, alpha) parameter for the mixing weight
    cfg.MIXUP.CUTMIX_ALPHA = 1.0  # CutMix's Beta(alpha, alpha) parameter for the box's area
    cfg.MIXUP.LABEL_SMOOTH_VALUE = 0.1  # label smoothing of the mixed labels (0-1: the mass spread over all classes)

    # The host's data-loader processes (resource keys: a submitter sizes them for the machine).
    cfg.DATA_LOADER = CfgNode()
    # Decoding processes per training process: an integer >= 0 (0 decodes in the training loop) or "auto",
    # this process's share of the usable cores minus one (vmb.data.loader.resolve_num_workers).
    cfg.DATA_LOADER.NUM_WORKERS = "auto"
    # Pin the host batches' memory for the copy to the GPU (CUDA with a host DECODING_BACKEND only).
    cfg.DATA_LOADER.PIN_MEMORY = True
    # Batches each data-loader worker prepares ahead (torch's prefetch_factor); unused with no workers.
    cfg.DATA_LOADER.PREFETCH_FACTOR = 2
