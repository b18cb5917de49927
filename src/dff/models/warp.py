"""mmtracking's flow_warp_feats (docs/mmtracking_spec.md §3.2), reproduced exactly, including its (W-1)/W grid shrink.

Spec pitfalls handled here: 16, 17 (docs/pitfalls.md maps each to its code and tests).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def warp_grid(flow: torch.Tensor) -> torch.Tensor:
    """Feature-resolution flow (N, 2, H, W) -> grid_sample grid (N, H, W, 2), normalised by W and H."""
    n, _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=flow.device), torch.arange(w, device=flow.device), indexing="ij")
    grid = torch.stack([xs, ys]).to(flow)[None] + flow
    gx = grid[:, 0] / w * 2 - 1
    gy = grid[:, 1] / h * 2 - 1
    return torch.stack([gx, gy], dim=-1)


class FlowWarp(nn.Module):
    """Warp key-frame features (N, C, H, W) to the current frame with image-resolution flow (N, 2, Hp, Wp)."""

    def forward(self, feats: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        s = float(feats.shape[-1]) / float(flow.shape[-1])  # a Python float, also when traced (dff.export)
        flow = F.interpolate(flow, scale_factor=s, mode="bilinear", align_corners=False) * s
        return F.grid_sample(feats, warp_grid(flow), mode="bilinear", padding_mode="border", align_corners=True)
