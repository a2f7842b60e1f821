"""The decoding backends VMB knows (DATA.DECODING_BACKEND): where each one's code is and where its frames land.

Declared here, free of torch, so that the config (its choice list) and the scorer can name them without importing
the data path; vmb.data.video imports the code on first use.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backend:
    """A DATA.DECODING_BACKEND: where its code is, and where its frames land.

    `entry` is "module:function", imported on first use (optional backends need their packages only when
    chosen). A host backend's function is a `Decoder` (decode_clip's signature and contract), run in data-loader
    workers; an on-device backend's is a factory `(torch.device) -> BatchDecoder` whose frames stay on that
    GPU, run in a background thread of the training process (vmb.data.device_loader), never in workers.
    """

    entry: str
    on_device: bool


BACKENDS = {
    "pyav": Backend("vmb.data.video:decode_clip", on_device=False),
    "torchcodec": Backend("vmb.data.video_torchcodec:decode_clip", on_device=False),
    "torchcodec_cuda": Backend("vmb.data.video_torchcodec:batch_decoder_cuda", on_device=True),
    "dali": Backend("vmb.data.video_dali:batch_decoder", on_device=True),
}
