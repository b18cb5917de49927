"""mmdet DeltaXYWHBBoxCoder: centres as (x1+x2)/2, no +1, dw/dh clamped on both sides (docs/mmtracking_spec.md §3.5).

Spec pitfalls handled here: 8 (docs/pitfalls.md maps each to its code and tests).
"""

from __future__ import annotations

import math

import torch

WH_RATIO_CLIP = 16 / 1000
MAX_RATIO = abs(math.log(WH_RATIO_CLIP))


def encode(proposals: torch.Tensor, gt: torch.Tensor, stds: tuple[float, ...]) -> torch.Tensor:
    """(N, 4) boxes and matching (N, 4) targets -> (N, 4) normalised deltas (means 0)."""
    proposals, gt = proposals.float(), gt.float()
    px, py = (proposals[:, 0] + proposals[:, 2]) * 0.5, (proposals[:, 1] + proposals[:, 3]) * 0.5
    pw, ph = proposals[:, 2] - proposals[:, 0], proposals[:, 3] - proposals[:, 1]
    gx, gy = (gt[:, 0] + gt[:, 2]) * 0.5, (gt[:, 1] + gt[:, 3]) * 0.5
    gw, gh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    deltas = torch.stack([(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)], dim=-1)
    return deltas / deltas.new_tensor(stds)


def decode(
    rois: torch.Tensor, deltas: torch.Tensor, stds: tuple[float, ...], max_shape: tuple[int, int] | None
) -> torch.Tensor:
    """(N, 4) rois and (N, 4k) deltas -> (N, 4k) boxes, clipped to max_shape=(h, w) when given."""
    n, k = deltas.size(0), deltas.size(1) // 4
    if n == 0:
        return deltas
    d = deltas.reshape(-1, 4) * deltas.new_tensor(stds).view(1, -1)
    rois_ = rois.repeat(1, k).reshape(-1, 4)
    pxy = (rois_[:, :2] + rois_[:, 2:]) * 0.5
    pwh = rois_[:, 2:] - rois_[:, :2]
    dwh = d[:, 2:].clamp(min=-MAX_RATIO, max=MAX_RATIO)
    gxy = pxy + pwh * d[:, :2]
    gwh = pwh * dwh.exp()
    boxes = torch.cat([gxy - gwh * 0.5, gxy + gwh * 0.5], dim=-1)
    if max_shape is not None:
        boxes[..., 0::2].clamp_(min=0, max=max_shape[1])
        boxes[..., 1::2].clamp_(min=0, max=max_shape[0])
    return boxes.reshape(n, -1)
