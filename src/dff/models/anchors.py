"""mmdet AnchorGenerator for one level: unrounded base anchors, centre offset 0, ratio-major order
(docs/mmtracking_spec.md §3.4).

Spec pitfalls handled here: 7 (docs/pitfalls.md maps each to its code and tests).
"""

from __future__ import annotations

import torch


def base_anchors(base_size: float, scales: tuple[float, ...], ratios: tuple[float, ...]) -> torch.Tensor:
    """(A, 4) anchors centred at (0, 0); ratio = h/w; for r in ratios, for s in scales (scale_major)."""
    ratios_t = torch.tensor(ratios, dtype=torch.float32)
    scales_t = torch.tensor(scales, dtype=torch.float32)
    h_ratios = torch.sqrt(ratios_t)
    w_ratios = 1 / h_ratios
    ws = (base_size * w_ratios[:, None] * scales_t[None, :]).view(-1)
    hs = (base_size * h_ratios[:, None] * scales_t[None, :]).view(-1)
    return torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], dim=-1)


def grid_anchors(base: torch.Tensor, feat_h: int, feat_w: int, stride: int) -> torch.Tensor:
    """(H*W*A, 4) anchors shifted to (stride*x, stride*y), flattened in (y, x, anchor) order."""
    shift_x = torch.arange(0, feat_w, dtype=torch.float32, device=base.device) * stride
    shift_y = torch.arange(0, feat_h, dtype=torch.float32, device=base.device) * stride
    yy, xx = torch.meshgrid(shift_y, shift_x, indexing="ij")
    xx, yy = xx.reshape(-1), yy.reshape(-1)
    shifts = torch.stack([xx, yy, xx, yy], dim=-1)
    return (base[None, :, :] + shifts[:, None, :]).view(-1, 4)


def inside_flags(anchors: torch.Tensor, img_shape: tuple[int, int]) -> torch.Tensor:
    """Training validity with allowed_border=0: x1>=0, y1>=0, x2<W, y2<H of the unpadded image."""
    h, w = img_shape
    return (anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & (anchors[:, 2] < w) & (anchors[:, 3] < h)
