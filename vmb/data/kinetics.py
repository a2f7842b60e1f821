"""Kinetics-format video dataset: `{split}.csv` lists `relative/path.mp4 label_index`, one video per line.

Each sample's randomness comes from a generator seeded by (seed, epoch, index), so a run's clips depend on
neither the number of data-loader workers nor the number of processes.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vmb.data import transforms as T
from vmb.data.augment import draw_clip_augment
from vmb.data.sampling import clip_duration, clip_start, sample_times, view_start
from vmb.data.video import ClipRequest, batch_decoder, crop_resize, full_frame
from vmb.errors import DataError


@dataclass(frozen=True)
class ClipSpec:
    """How clips are sampled and augmented (see DATA.* and AUG.* in the config)."""

    num_frames: int
    sampling_rate: int
    target_fps: float
    train_jitter_scales: tuple[int, int]
    train_crop_size: int
    test_crop_size: int
    rrc_scale: tuple[float, ...] = ()  # random-resized-crop area range; empty: scale jitter + crop
    rrc_ratio: tuple[float, ...] = ()
    random_flip: bool = True
    rand_augment: tuple[int, float, float] | None = None  # (num_ops, magnitude, magnitude_std), timm's scale
    erase_prob: float = 0.0
    backend: str = "pyav"  # DATA.DECODING_BACKEND: a key of vmb.data.video.BACKENDS


def missing_data_dir(data_dir: Path) -> DataError:
    """The error for a data folder that does not exist, saying how to make one."""
    return DataError(f"{data_dir}: data directory not found; set DATA.PATH_TO_DATA_DIR, or make the data: "
                     "tools/prepare_kinetics20.py (Kinetics20), tools/make_synthetic.py --profile kinetics (dry run)")


def read_split_csv(csv_path: Path, num_classes: int) -> list[tuple[str, int]]:
    """Parse a Kinetics CSV into (relative path, label) pairs; a bad line stops with file:line."""
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: split file not found (DATA.PATH_TO_DATA_DIR must hold train.csv and val.csv)")
    try:
        text = csv_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{csv_path}: not a text (UTF-8) split file (byte {exc.start} is not text); rebuild it "
                        "with tools/prepare_kinetics20.py") from None
    entries = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise DataError(f"{csv_path}:{line_no}: expected 'path label', got {line.strip()!r}")
        path, label_text = fields
        try:
            label = int(label_text)
        except ValueError:
            raise DataError(f"{csv_path}:{line_no}: label {label_text!r} is not an integer") from None
        if not 0 <= label < num_classes:
            raise DataError(
                f"{csv_path}:{line_no}: label {label} out of range [0, {num_classes}) (MODEL.NUM_CLASSES)")
        entries.append((path, label))
    if not entries:
        raise DataError(f"{csv_path}: no videos listed (empty split)")
    return entries


@dataclass
class _Draw:
    """One sample while it is drawn: the video now tried, its generator (None in validation), failures so far."""

    index: int
    rng: np.random.Generator | None
    failures: int = 0


class KineticsDataset(torch.utils.data.Dataset):
    """Clips from a Kinetics-format split.

    Indexed by (epoch, index) pairs (see vmb.data.loader.TrainSampler). A sample is
    `(clip uint8 (C, T, H, W), label int, failed_decodes int, augment int64 (P,))`, `augment` the RandAugment
    and erasing parameters drawn for the clip (vmb/data/augment.py; empty in validation or without AUG),
    which the training loop applies on the device. In training a video that fails to decode is
    replaced by a random other one (up to `num_retries` in a row) and the failures are returned with the
    sample, so the loop can count them exactly; in validation a failure raises `DataError`.

    Clips are decoded on `device` by DATA.DECODING_BACKEND's batch decoder (vmb.data.video): a host backend's
    on the CPU, one clip at a time, in data-loader workers (`__getitem__`); an on-device backend's on that GPU,
    a whole batch per call (`load_batch`, vmb.data.device_loader). Both give a key the same sample: the same
    video, label, failures, instants, box, flip and augmentation draws, in the same order.

    With `views` = (clips, crops) a validation sample's clip is instead a stack of clips x crops test
    views, uint8 (V, C, T, H, W), V = clips * crops, clip-major (`_load_views`).
    """

    def __init__(self, data_dir: str | Path, split: str, num_classes: int, clip: ClipSpec, train: bool,
                 seed: int = 0, num_retries: int = 10, path_prefix: str = "",
                 views: tuple[int, int] | None = None, device: torch.device = torch.device("cpu")) -> None:
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise missing_data_dir(data_dir)
        csv_path = data_dir / f"{split}.csv"
        root = Path(path_prefix) if path_prefix else data_dir
        self.entries = [(root / path, label) for path, label in read_split_csv(csv_path, num_classes)]
        missing = [str(path) for path, _ in self.entries if not path.is_file()]
        if missing:
            raise DataError(f"{csv_path}: {len(missing)} listed video(s) missing, first: {missing[0]}")
        self.clip, self.train, self.seed, self.num_retries = clip, train, seed, num_retries
        self.views = views
        self.decode_batch = batch_decoder(clip.backend, device)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int, int, torch.Tensor]:
        if self.views is not None and not self.train:
            path, label = self.entries[key[1]]
            return self._load_views(path), label, 0, torch.zeros(0, dtype=torch.int64)
        return self._samples([key])[0]

    def load_batch(self, keys: Sequence[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                   torch.Tensor]:
        """The samples of `keys` decoded in one call of the batch decoder (retries in further calls), collated as
        a DataLoader collates them: clips uint8 (N, C, T, H, W) on the decoder's device, and on the host labels
        int64 (N,), failed decodes int64 (N,), augment int64 (N, P)."""
        clips, labels, failures, augment = zip(*self._samples(keys))
        return (torch.stack(clips), torch.tensor(labels, dtype=torch.int64),
                torch.tensor(failures, dtype=torch.int64), torch.stack(augment))

    def _samples(self, keys: Sequence[tuple[int, int]]) -> list[tuple[torch.Tensor, int, int, torch.Tensor]]:
        """Each key's sample (class docstring), its retries drawn from its own generator exactly as one clip at a
        time would draw them."""
        draws = [_Draw(index, np.random.default_rng((self.seed, epoch, index)) if self.train else None)
                 for epoch, index in keys]
        samples: list = [None] * len(draws)
        pending = list(range(len(draws)))
        while pending:
            requests = [self._request(draws[i]) for i in pending]
            retry = []
            for i, request, result in zip(pending, requests, self.decode_batch(requests)):
                draw = draws[i]
                if isinstance(result, DataError):
                    if not self.train:
                        raise result
                    draw.failures += 1
                    if draw.failures > self.num_retries:
                        raise DataError(f"{request.path}: {draw.failures} videos in a row failed to decode; check "
                                        f"the dataset (DATA.NUM_RETRIES={self.num_retries})")
                    draw.index = int(draw.rng.integers(len(self.entries)))
                    retry.append(i)
                    continue
                clip = T.to_cthw(result)
                if draw.rng is not None and self.clip.random_flip:
                    clip = T.horizontal_flip(clip, draw.rng)
                samples[i] = (clip, self.entries[draw.index][1], draw.failures,
                              self._draw_augment(draw.rng, clip.shape[-2:]))
            pending = retry
        return samples

    def _request(self, draw: _Draw) -> ClipRequest:
        """What to decode for `draw`'s current video: its instants and box, drawn from its generator when the
        decoder asks (validation: the centre clip, centre crop)."""
        c, rng = self.clip, draw.rng
        path = self.entries[draw.index][0]

        def timing(duration: float) -> list[float]:
            start = clip_start(duration, clip_duration(c.num_frames, c.sampling_rate, c.target_fps), rng)
            return sample_times(start, c.num_frames, c.sampling_rate, c.target_fps)

        if rng is None:
            geometry = T.center_crop_geometry(c.test_crop_size)
        elif c.rrc_scale:
            geometry = T.random_resized_crop_geometry(c.train_crop_size, c.rrc_scale, c.rrc_ratio, rng)
        else:
            geometry = T.jitter_crop_geometry(c.train_jitter_scales, c.train_crop_size, rng)
        return ClipRequest(path, timing, geometry)

    def _load_views(self, path: Path) -> torch.Tensor:
        """(V, C, T, H, W) uint8: `view_start`'s evenly spaced clips, each cut into `uniform_crop_geometry`'s
        crops. Each clip is decoded once, whole, and every crop is cut from it as the decoder would
        (`crop_resize`), so the views of (1, 1) are exactly the validation clip (with the CPU decoders: the
        CUDA ones resize validation clips on the GPU, within a grey level of this)."""
        c, (num_clips, num_crops) = self.clip, self.views
        seconds = clip_duration(c.num_frames, c.sampling_rate, c.target_fps)
        crops = [T.uniform_crop_geometry(c.test_crop_size, i, num_crops) for i in range(num_crops)]

        def timing(duration: float, k: int) -> list[float]:
            return sample_times(view_start(duration, seconds, k, num_clips), c.num_frames, c.sampling_rate,
                                c.target_fps)

        requests = [ClipRequest(path, functools.partial(timing, k=k), full_frame()) for k in range(num_clips)]
        views = []
        for frames in self.decode_batch(requests):  # each (T, H, W, 3)
            if isinstance(frames, DataError):
                raise frames
            height, width = frames.shape[1:3]
            views += [T.to_cthw(crop_resize(frames, *crop(width, height))) for crop in crops]
        return torch.stack(views)

    def _draw_augment(self, rng: np.random.Generator | None, size: tuple[int, int]) -> torch.Tensor:
        """The clip's RandAugment / erasing parameters (applied by the training loop on the device)."""
        c = self.clip
        if rng is None or (c.rand_augment is None and c.erase_prob == 0):
            return torch.zeros(0, dtype=torch.int64)
        num_ops, magnitude, magnitude_std = c.rand_augment or (0, 0.0, 0.0)
        return draw_clip_augment(rng, num_ops, magnitude, magnitude_std, c.erase_prob, *size)
