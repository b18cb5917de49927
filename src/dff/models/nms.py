"""Greedy NMS as mmcv runs it, stopped once enough boxes survive; the one NMS of proposals and detections.

Greedy NMS decides a box only from higher-scoring boxes, so when only the first k survivors are kept (300
proposals, 100 detections), NMS over the best-scoring few hundred candidates keeps the same boxes as NMS over all
of them; the candidate set grows until k survive or every box is used. Class-aware NMS is mmcv's offset trick: one
NMS over boxes shifted by label * (max coordinate + 1), so boxes of different classes never overlap.

Spec pitfalls handled here: 9, 12, 13 (docs/pitfalls.md maps each to its code and tests).
"""

from __future__ import annotations

import torch
import torchvision


def nms_top_k(boxes: torch.Tensor, scores: torch.Tensor, iou: float, k: int) -> torch.Tensor:
    """Indices of the first k boxes kept by greedy NMS (by descending score) = `nms(boxes, scores, iou)[:k]`."""
    n = scores.shape[0]
    if n <= 4 * k:
        return torchvision.ops.nms(boxes, scores, iou)[:k]
    order = scores.argsort(descending=True)
    m = 4 * k
    while True:
        candidates = order[:m]
        keep = torchvision.ops.nms(boxes[candidates], scores[candidates], iou)
        if keep.numel() >= k or m == n:
            return candidates[keep[:k]]
        m = min(n, 4 * m)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou: float, k: int) -> torch.Tensor:
    """mmcv class-aware NMS of (N, 4) boxes: the first k kept indices, by descending score."""
    offsets = labels.to(boxes) * (boxes.max() + 1)
    return nms_top_k(boxes + offsets[:, None], scores, iou, k)
