"""Video encodings: the benchmark's prepared format and the candidates the loader study compares.

A `VideoFormat` says how a clip is (re-)encoded with PyAV: codec, short side, frame rate, keyframe interval
(GOP), quality. `PREPARED` is the format `tools/prepare_kinetics20.py` writes and the Kinetics-shaped
synthetic data uses; docs/DATA.md gives the measurements it was chosen from (`tools/bench_loader.py`).
"""
from __future__ import annotations

import dataclasses
from fractions import Fraction

import av

# Bump when PREPARED or the way clips are prepared changes: it is part of the dataset fingerprint.
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class VideoFormat:
    """One encoding of a video stream (no audio)."""

    name: str
    codec: str = "libx264"
    short_side: int | None = 256  # None keeps the source size
    fps: int | None = 30  # constant output frame rate; None keeps the source's frames as they are
    gop: int | None = 1  # frames between keyframes; 1 = all-intra, None = the encoder's default
    crf: int = 23
    preset: str = "veryfast"
    tune: str | None = None  # e.g. "fastdecode": no CABAC, no deblocking (faster decoding, more bytes)
    bframes: int | None = 0  # None = the encoder's default (x264: 3)
    pix_fmt: str = "yuv420p"
    container: str = "mp4"
    threads: int = 1  # one encoder thread: x264's output does not depend on thread scheduling

    def codec_options(self) -> dict[str, str]:
        """Encoder options (FFmpeg's AVOptions) for PyAV's `add_stream(..., options=...)`."""
        options: dict[str, str] = {"threads": str(self.threads)}
        if self.codec == "libx264":
            options.update(preset=self.preset, crf=str(self.crf))
            # mbtree reads uninitialised memory in some x264 builds, so identical encodes can differ.
            options["mbtree"] = "0"
            if self.tune:
                options["tune"] = self.tune
            if self.bframes is not None:
                options["bf"] = str(self.bframes)
        elif self.codec == "mjpeg":
            options["q:v"] = str(self.crf)
        if self.gop is not None:
            options.update(g=str(self.gop), keyint_min=str(self.gop), sc_threshold="0")
        return options

    def container_options(self) -> dict[str, str]:
        """Muxer options for `av.open(..., "w", options=...)`: mp4's index goes first ("faststart"), so a
        reader needs no seek to the file's end and a truncated copy still plays up to the cut."""
        return {"movflags": "+faststart"} if self.container == "mp4" else {}

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the encoded frames for a `width` x `height` source: the short side scaled to
        `short_side`, both sides rounded to even numbers (4:2:0 chroma)."""
        if self.short_side is None:
            return width - width % 2, height - height % 2
        if width <= height:
            new_w, new_h = self.short_side, height * self.short_side / width
        else:
            new_w, new_h = width * self.short_side / height, self.short_side
        return 2 * max(1, round(new_w / 2)), 2 * max(1, round(new_h / 2))

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def add_video_stream(container: "av.container.OutputContainer", fmt: VideoFormat, width: int, height: int,
                     rate: int | Fraction) -> "av.video.stream.VideoStream":
    """Add a video stream encoding `fmt` at `width` x `height` (already scaled) and `rate` frames/s."""
    stream = container.add_stream(fmt.codec, rate=rate, options=fmt.codec_options())
    stream.width, stream.height, stream.pix_fmt = width, height, fmt.pix_fmt
    if fmt.codec == "mjpeg":
        stream.pix_fmt = "yuvj420p"
    return stream


# The prepared format (see docs/DATA.md for the study behind it).
PREPARED = VideoFormat(name="prepared", gop=1, tune="fastdecode")

# What the loader study compares (tools/bench_loader.py).
SOURCE_LIKE = VideoFormat(name="source_like", short_side=None, fps=None, gop=None, bframes=None, preset="medium")
CANDIDATES: dict[str, VideoFormat] = {
    f.name: f
    for f in (
        SOURCE_LIKE,
        VideoFormat(name="gop16", gop=16, preset="veryfast", bframes=None),  # MMAction2's "dense encoding"
        VideoFormat(name="intra", gop=1),
        VideoFormat(name="intra_fastdecode", gop=1, tune="fastdecode"),
        VideoFormat(name="gop4_fastdecode", gop=4, tune="fastdecode"),  # fewer bytes, up to 3 extra decodes
        VideoFormat(name="mjpeg", codec="mjpeg", gop=None, bframes=None, crf=4, container="avi"),
    )
}
