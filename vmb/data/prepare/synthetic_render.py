"""The synthetic motion videos' pictures: 20 classes that only motion over time tells apart.

Every video shows a random smooth colour texture that moves in one of 10 ways (pans, diagonals, zooms, rotation,
oscillations) at one of 2 speeds. Textures, colours and start positions are drawn independently of the label, so
a single frame carries no class information; left/right directions are drawn at random per video, so every class
is invariant under horizontal flip. vmb.data.prepare.synthetic encodes them into datasets.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterator

import numpy as np

if TYPE_CHECKING:
    from vmb.data.prepare.synthetic import SyntheticSpec

MOTIONS: tuple[str, ...] = (
    "pan_horizontal",
    "pan_up",
    "pan_down",
    "diagonal_up",
    "diagonal_down",
    "zoom_in",
    "zoom_out",
    "rotate",
    "oscillate_horizontal",
    "oscillate_vertical",
)
SPEEDS: tuple[str, ...] = ("slow", "fast")
CLASS_NAMES: tuple[str, ...] = tuple(f"{m}_{s}" for m in MOTIONS for s in SPEEDS)

# Motion magnitudes of the slow speed, per frame; the fast speed multiplies them by _FAST_FACTOR.
# Pans move content 1.6 px per frame; zoom and rotation move content at 40-50 px from the centre
# by about as much; oscillations peak at about 2 px per frame with a 12 frame period.
_FAST_FACTOR = 2.5
_PAN_PX = 1.6
_ZOOM_LOG_RATE = 0.03
_ROTATE_RAD = 0.04
_OSCILLATE_AMPLITUDE_PX = 4.0
_OSCILLATE_PERIOD = 12.0
_SPEED_JITTER = 0.15

# Texture: low-pass noise with a Gaussian correlation length (px) drawn log-uniformly per video.
# The range is wide so that the scale drift of a zoom clip says little about its class.
_BLOB_SIGMA_PX = (2.5, 7.0)
_MIN_TEXTURE_STD = 40.0


def render_frames(label: int, rng: np.random.Generator, spec: SyntheticSpec) -> Iterator[np.ndarray]:
    """Frames of one video of class `label`, one uint8 (H, W, 3) array at a time (a long, large video
    never has to be held in memory).

    All random draws happen in this call, not while iterating. They do not depend on `label`, so the same
    generator state gives the same texture, start offset, jitter and sign for every class: two labels
    differ only in their motion.
    """
    if not 0 <= label < len(CLASS_NAMES):
        raise ValueError(f"label {label} is outside [0, {len(CLASS_NAMES)})")
    size = _texture_size(spec)
    texture = _random_texture(rng, size)
    jitter = rng.uniform(1.0 - _SPEED_JITTER, 1.0 + _SPEED_JITTER)
    sign = rng.choice((-1.0, 1.0))
    phase = rng.uniform(0.0, 2.0 * math.pi)
    offset = rng.uniform(0.0, size, size=2)

    motion, speed = divmod(label, len(SPEEDS))
    magnitude = jitter * (_FAST_FACTOR if SPEEDS[speed] == "fast" else 1.0)
    scale, angle, shift = _trajectory(MOTIONS[motion], magnitude, sign, phase, spec.num_frames)
    return _warp(texture, scale, angle, shift + offset, spec.height, spec.width)


def render_video(label: int, rng: np.random.Generator, spec: SyntheticSpec) -> np.ndarray:
    """All frames of one video of class `label` (see render_frames): uint8 array of shape (T, H, W, 3)."""
    frames = np.empty((spec.num_frames, spec.height, spec.width, 3), dtype=np.uint8)
    for frame, image in zip(frames, render_frames(label, rng, spec)):
        frame[...] = image
    return frames


def _texture_size(spec: SyntheticSpec) -> int:
    """Side of the square periodic texture: a power of two (cheap wrap-around) at least twice the
    frame's long side, so zooms and rotations rarely show a repeat."""
    return max(128, 1 << math.ceil(math.log2(2 * max(spec.width, spec.height))))


def _random_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Periodic smooth colour texture, channels first: float32 array of shape (3, size, size) in [0, 255].

    Two low-pass Gaussian noise fields, squashed by tanh into blobs, blend a random 4-colour
    palette; the result is contrast-stretched if its luminance is too flat to track motion.
    """
    sigma_px = math.exp(rng.uniform(*np.log(_BLOB_SIGMA_PX)))
    freq_y = np.fft.fftfreq(size)[:, None]
    freq_x = np.fft.rfftfreq(size)[None, :]
    lowpass = np.exp(-2.0 * (math.pi * sigma_px) ** 2 * (freq_x**2 + freq_y**2)).astype(np.float32)
    noise = rng.standard_normal((2, 2, size, size // 2 + 1), dtype=np.float32)
    fields = np.fft.irfft2((noise[0] + 1j * noise[1]) * lowpass, s=(size, size))
    fields -= fields.mean(axis=(1, 2), keepdims=True)
    fields /= fields.std(axis=(1, 2), keepdims=True)
    a, b = 0.5 + 0.5 * np.tanh(1.5 * fields)

    c00, c10, c01, c11 = rng.uniform(0.0, 255.0, size=(4, 3, 1, 1)).astype(np.float32)
    texture = c00 + (c10 - c00) * a + (c01 - c00) * b + (c11 - c10 - c01 + c00) * (a * b)
    mean = texture.mean(axis=(1, 2), keepdims=True)
    stretch = max(1.0, _MIN_TEXTURE_STD / float(texture.mean(axis=0).std()))
    return np.clip(mean + (texture - mean) * stretch, 0.0, 255.0).astype(np.float32)


def _trajectory(
    motion: str, magnitude: float, sign: float, phase: float, num_frames: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame content transform: scale (T,), angle in radians (T,) and shift in px (T, 2) as (x, y).

    Image y points down, so "up" is a negative y shift. Zooms are centred on the middle frame, so a
    zoom_in clip played backwards is a zoom_out clip and the set of frames has no zoom direction.
    """
    t = np.arange(num_frames, dtype=np.float64)
    scale = np.ones(num_frames)
    angle = np.zeros(num_frames)
    shift = np.zeros((num_frames, 2))
    directions = {
        "pan_horizontal": (sign, 0.0),
        "pan_up": (0.0, -1.0),
        "pan_down": (0.0, 1.0),
        "diagonal_up": (sign / math.sqrt(2.0), -1.0 / math.sqrt(2.0)),
        "diagonal_down": (sign / math.sqrt(2.0), 1.0 / math.sqrt(2.0)),
    }
    if motion in directions:
        shift = _PAN_PX * magnitude * t[:, None] * np.asarray(directions[motion])
    elif motion in ("zoom_in", "zoom_out"):
        direction = 1.0 if motion == "zoom_in" else -1.0
        scale = np.exp(direction * _ZOOM_LOG_RATE * magnitude * (t - (num_frames - 1) / 2.0))
    elif motion == "rotate":
        angle = sign * _ROTATE_RAD * magnitude * t
    else:
        axis = 0 if motion == "oscillate_horizontal" else 1
        omega = 2.0 * math.pi / _OSCILLATE_PERIOD
        shift[:, axis] = _OSCILLATE_AMPLITUDE_PX * magnitude * np.sin(omega * t + phase)
    return scale, angle, shift


def _warp(
    texture: np.ndarray, scale: np.ndarray, angle: np.ndarray, shift: np.ndarray, height: int, width: int
) -> Iterator[np.ndarray]:
    """Sample the periodic texture (3, S, S) under each frame's transform; yields uint8 (H, W, 3) frames.

    Output pixel p (relative to the frame centre) shows texture point R(-angle) p / scale - shift,
    i.e. the content is scaled, rotated about the centre, then translated by `shift`. Frames are
    sampled one at a time: small temporaries stay on the heap, which is much faster than mapping
    fresh pages for whole-video arrays.
    """
    y = (np.arange(height, dtype=np.float32) - (height - 1) / 2.0)[:, None]
    x = (np.arange(width, dtype=np.float32) - (width - 1) / 2.0)[None, :]
    cos = np.cos(angle) / scale
    sin = np.sin(angle) / scale
    for t in range(len(scale)):
        c, s = np.float32(cos[t]), np.float32(sin[t])
        tex_x = (c * x - np.float32(shift[t, 0])) + s * y
        tex_y = (c * y - np.float32(shift[t, 1])) - s * x
        yield _bilinear_periodic(texture, tex_y.ravel(), tex_x.ravel()).T.reshape(height, width, 3)


def _bilinear_periodic(texture: np.ndarray, tex_y: np.ndarray, tex_x: np.ndarray) -> np.ndarray:
    """Bilinear lookup of texture (3, S, S), S a power of two, at N points, wrapping around.

    Returns uint8 (3, N).
    """
    size = texture.shape[1]
    mask = size - 1
    flat = texture.reshape(3, -1)
    x0 = np.floor(tex_x)
    y0 = np.floor(tex_y)
    wx = tex_x - x0
    wy = tex_y - y0
    x0 = x0.astype(np.int32)
    y0 = y0.astype(np.int32)
    x1 = (x0 + 1) & mask
    x0 &= mask
    row1 = ((y0 + 1) & mask) * size
    row0 = (y0 & mask) * size
    top = flat.take(row0 + x0, axis=1)
    top += (flat.take(row0 + x1, axis=1) - top) * wx
    bottom = flat.take(row1 + x0, axis=1)
    bottom += (flat.take(row1 + x1, axis=1) - bottom) * wx
    top += (bottom - top) * wy
    return np.rint(top, out=top).astype(np.uint8)
