"""Cheap signals a key-frame policy can read off a frame, none depending on the network's weights.

All work on thumbnails: the preprocessed image (normalised, zero-padded) averaged over `THUMB` x `THUMB` cells, so
one 1008x576 input is a 126x72 map (the FlowNet's output resolution). Cost per frame: one average pooling of the
input image, and for a propagated frame one pooling of the flow and a bilinear warp of the key thumbnail.

- `colour_histogram` / `histogram_distance`: a joint RGB histogram (8 bins a channel) of the valid thumbnail and
  the L1/2 distance of two of them, in [0, 1]. Motion and pans move pixels without changing the histogram much;
  a shot cut changes it at once. The shot-cut test compares consecutive frames.
- `warp_residual`: the photometric residual of the flow: mean |current - key warped by the flow| over the valid
  thumbnail pixels whose flow lands inside the key image, in units of the normalised image (about 1 = one standard
  deviation of the colour). It grows where the flow is wrong or the key frame's content no longer explains the
  current one (occlusions, objects that changed).
- `outside_share`: the share of valid thumbnail pixels whose flow points outside the key image: content the key frame
  did not see (a pan or an object entering at the border).
- `displacement`: how far the content has moved since the key frame: a high quantile of the flow's length over the
  valid thumbnail, per thumbnail width (0.1 = a tenth of the frame). Warping degrades with it (fast objects,
  zoom), whether or not the flow explains the frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

THUMB = 8  # input pixels per thumbnail cell (a side)
BINS = 8  # histogram bins per colour channel
_RANGE = (-2.2, 2.7)  # the normalised colour range of an ImageNet-normalised uint8 image


def thumbnail(img: torch.Tensor, img_shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 3, Hp, Wp) image -> float32 thumbnail (1, 3, Hp/8, Wp/8) and the mask (Hp/8, Wp/8) of cells inside
    img_shape."""
    small = F.avg_pool2d(img.float(), THUMB, ceil_mode=True)
    h, w = small.shape[-2:]
    ys = torch.arange(h, device=img.device) * THUMB < img_shape[0]
    xs = torch.arange(w, device=img.device) * THUMB < img_shape[1]
    return small, ys[:, None] & xs[None, :]


def colour_histogram(thumb: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Normalised joint RGB histogram (BINS**3,) of the valid cells of a thumbnail."""
    lo, hi = _RANGE
    q = ((thumb[0] - lo) / (hi - lo) * BINS).long().clamp_(0, BINS - 1)  # (3, h, w)
    index = (q[0] * BINS + q[1]) * BINS + q[2]
    hist = torch.bincount(index[valid], minlength=BINS**3).float()
    return hist / hist.sum().clamp(min=1)


def histogram_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Half the L1 distance of two normalised histograms: 0 (same colours) to 1 (no colour in common)."""
    return 0.5 * float((a - b).abs().sum())


def _thumb_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Image-resolution flow (1, 2, Hp, Wp) in pixels -> the mean flow of each thumbnail cell, in cells."""
    small = F.avg_pool2d(flow.float(), THUMB, ceil_mode=True) / THUMB
    return small[..., : size[0], : size[1]]


def _landing(flow: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where each thumbnail cell's content is in the key frame (x, y in cells) and whether that is inside it."""
    h, w = valid.shape
    f = _thumb_flow(flow, (h, w))
    ys, xs = torch.meshgrid(torch.arange(h, device=f.device), torch.arange(w, device=f.device), indexing="ij")
    x, y = xs + f[0, 0], ys + f[0, 1]
    inside_h, inside_w = int(valid[:, 0].sum()), int(valid[0].sum())
    return x, y, (x >= 0) & (x <= inside_w - 1) & (y >= 0) & (y <= inside_h - 1)


def outside_share(flow: torch.Tensor, valid: torch.Tensor) -> float:
    """The share of valid thumbnail cells whose flow (1, 2, Hp, Wp, current -> key) points outside the key image."""
    _, _, inside = _landing(flow, valid)
    return 1.0 - float((valid & inside).sum()) / max(int(valid.sum()), 1)


def warp_residual(current: torch.Tensor, key: torch.Tensor, flow: torch.Tensor, valid: torch.Tensor) -> float:
    """Mean |current - key warped by the flow| over the valid thumbnail cells that land inside the key image:
    thumbnails (1, 3, h, w), image-resolution flow (1, 2, Hp, Wp) from current to key, valid-cell mask (h, w)."""
    h, w = valid.shape
    x, y, inside = _landing(flow, valid)
    use = valid & inside
    if not bool(use.any()):
        return 0.0
    grid = torch.stack([x / max(w - 1, 1) * 2 - 1, y / max(h - 1, 1) * 2 - 1], dim=-1)[None]
    warped = F.grid_sample(key, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return float((current - warped).abs().mean(dim=1)[0][use].mean())


def displacement(flow: torch.Tensor, valid: torch.Tensor, quantile: float = 0.95) -> float:
    """The `quantile` of the flow's length over the valid thumbnail cells, per thumbnail width; `flow` (1, 2, Hp,
    Wp) in image pixels from the current frame to the key frame."""
    f = _thumb_flow(flow, valid.shape)[0]
    return float(torch.quantile(f.norm(dim=0)[valid], quantile)) / valid.shape[-1]
