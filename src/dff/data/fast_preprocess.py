"""The test-time preprocessing of transforms.preprocess, fused into one padded buffer and free of torch ops.

Same values bit for bit: the uint8 resize, then BGR->RGB (a permutation, done on uint8), the cv2 subtract (with the
conversion to float32) and multiply, written straight into the top-left of a zeroed (Hp, Wp, 3) buffer, so there
is no separate pad copy and no CHW transpose: `torch.from_numpy(buf).permute(2, 0, 1)` is already the
channels_last tensor the fast network takes. Only OpenCV computes here, so a background thread preprocessing the
next frame neither starts a second OpenMP team next to the network's nor holds the GIL for long (a numpy
uint8->float32 copy would, for milliseconds, stalling the main thread between its ops).

Spec pitfalls handled here: 1, 2 (docs/pitfalls.md maps each to its code and tests).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from dff.config import PreprocessConfig
from dff.data.transforms import ImageMeta, image_meta


def preprocess_hwc(frame: np.ndarray, cfg: PreprocessConfig) -> tuple[np.ndarray, ImageMeta]:
    """uint8 BGR (H, W, 3) -> normalised, zero-padded float32 (Hp, Wp, 3) RGB array and its ImageMeta."""
    meta = image_meta(*frame.shape[:2], cfg)
    (nh, nw), (ph, pw) = meta.img_shape, meta.pad_shape
    resized = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    cv2.cvtColor(resized, cv2.COLOR_BGR2RGB, resized)
    out = np.zeros((ph, pw, 3), np.float32)
    view = out[:nh, :nw]
    cv2.subtract(resized, np.float64(np.asarray(cfg.mean).reshape(1, -1)), dst=view, dtype=cv2.CV_32F)
    cv2.multiply(view, 1.0 / np.float64(np.asarray(cfg.std).reshape(1, -1)), view)
    return out, meta


def as_channels_last(hwc: np.ndarray) -> torch.Tensor:
    """(Hp, Wp, 3) array -> (1, 3, Hp, Wp) channels_last tensor sharing its memory."""
    return torch.from_numpy(hwc).permute(2, 0, 1)[None]
