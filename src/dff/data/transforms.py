"""mmtracking's test-time image arithmetic (docs/mmtracking_spec.md §2.5-2.6): keep-ratio resize, normalise, pad.

Each step is a small pure function so that it can be unit-tested against the spec's worked examples.

Spec pitfalls handled here: 1, 2, 3, 21 (docs/pitfalls.md maps each to its code and tests).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from dff.config import PreprocessConfig
from dff.errors import InputError


@dataclass(frozen=True)
class ImageMeta:
    """Geometry of one preprocessed frame: (h, w) of the original, resized and padded image."""

    ori_shape: tuple[int, int]
    img_shape: tuple[int, int]
    pad_shape: tuple[int, int]
    scale_factor: np.ndarray  # float32 (4,): [w_scale, h_scale, w_scale, h_scale]


ImageShapes = torch.Tensor | Sequence[tuple[int, int]] | tuple[int, int]
"""Each frame's content (h, w) inside its padding, for a batch of frames: an (N, 2) int64 tensor or N pairs, or
one (h, w) pair shared by the whole batch."""


def shapes_tensor(img_shapes: ImageShapes, device: torch.device | str = "cpu") -> torch.Tensor:
    """`img_shapes` as an (N, 2) int64 tensor on `device` ((1, 2) for one shared pair, which broadcasts); a traced
    graph's input tensor passes through."""
    if isinstance(img_shapes, torch.Tensor):
        return img_shapes.to(device=device, dtype=torch.int64).reshape(-1, 2)
    pairs = [img_shapes] if len(img_shapes) == 2 and not isinstance(img_shapes[0], Sequence) else img_shapes
    return torch.tensor([[int(h), int(w)] for h, w in pairs], dtype=torch.int64, device=device).reshape(-1, 2)


def rescale_size(w: int, h: int, scale: tuple[int, int] = (1000, 600)) -> tuple[tuple[int, int], float]:
    """mmcv.rescale_size: ((new_w, new_h), s) with s = min(long/max(h,w), short/min(h,w)), sizes int(x*s+0.5)."""
    s = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return (int(w * float(s) + 0.5), int(h * float(s) + 0.5)), s


def scale_factor_for(w: int, h: int, new_w: int, new_h: int) -> np.ndarray:
    """Per-axis scale factors as mmdet stores them: float32 [w'/w, h'/h, w'/w, h'/h]."""
    ws, hs = new_w / w, new_h / h
    return np.array([ws, hs, ws, hs], dtype=np.float32)


def resize(img: np.ndarray, scale: tuple[int, int]) -> np.ndarray:
    """cv2 INTER_LINEAR keep-ratio resize of a uint8 BGR image (no antialias)."""
    h, w = img.shape[:2]
    (new_w, new_h), _ = rescale_size(w, h, scale)
    return cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)


def normalize(img: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """mmcv.imnormalize with to_rgb=True: float32 BGR->RGB, cv2.subtract(mean), cv2.multiply(1/std)."""
    out = img.astype(np.float32)
    cv2.cvtColor(out, cv2.COLOR_BGR2RGB, out)
    cv2.subtract(out, np.float64(np.asarray(mean).reshape(1, -1)), out)
    cv2.multiply(out, 1.0 / np.float64(np.asarray(std).reshape(1, -1)), out)
    return out


def padded_size(h: int, w: int, divisor: int = 16) -> tuple[int, int]:
    """(ceil(h/d)*d, ceil(w/d)*d)."""
    return int(math.ceil(h / divisor)) * divisor, int(math.ceil(w / divisor)) * divisor


def image_meta(h: int, w: int, cfg: PreprocessConfig) -> ImageMeta:
    """The geometry test-time preprocessing gives an (h, w) frame: keep-ratio resized into `cfg.scale`, padded to
    `cfg.size_divisor`, and the scale factors (the one place it is derived)."""
    (nw, nh), _ = rescale_size(w, h, cfg.scale)
    return ImageMeta(
        ori_shape=(h, w),
        img_shape=(nh, nw),
        pad_shape=padded_size(nh, nw, cfg.size_divisor),
        scale_factor=scale_factor_for(w, h, nw, nh),
    )


def pad_chw(t: torch.Tensor, divisor: int = 16) -> torch.Tensor:
    """Zero-pad a (C, H, W) tensor at the bottom/right to a multiple of `divisor`."""
    c, h, w = t.shape
    ph, pw = padded_size(h, w, divisor)
    if (ph, pw) == (h, w):
        return t
    out = t.new_zeros((c, ph, pw))
    out[:, :h, :w] = t
    return out


def check_frame(frame: object, where: str = "frame") -> np.ndarray:
    """Return `frame` if it is an HxWx3 uint8 array, else raise InputError naming `where`."""
    if not isinstance(frame, np.ndarray):
        raise InputError(f"{where}: expected an HxWx3 uint8 BGR numpy array, got {type(frame).__name__}")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or 0 in frame.shape:
        raise InputError(
            f"{where}: expected an HxWx3 uint8 BGR numpy array, got shape {tuple(frame.shape)} dtype {frame.dtype}"
        )
    return frame


def preprocess(frame: np.ndarray, cfg: PreprocessConfig) -> tuple[torch.Tensor, ImageMeta]:
    """uint8 BGR (H, W, 3) -> normalised, padded float32 (3, Hp, Wp) tensor and its ImageMeta."""
    meta = image_meta(*frame.shape[:2], cfg)
    resized = resize(frame, cfg.scale)
    chw = torch.from_numpy(normalize(resized, cfg.mean, cfg.std)).permute(2, 0, 1)
    return pad_chw(chw, cfg.size_divisor).contiguous(), meta
