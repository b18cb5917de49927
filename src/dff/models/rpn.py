"""Region proposal network: mmdet RPNHead (one level) and its test/train proposal filtering (docs/mmtracking_spec.md
§3.4).

Spec pitfalls handled here: 9, 13 (docs/pitfalls.md maps each to its code and tests).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dff.config import RPNConfig
from dff.models import anchors as anchor_ops
from dff.models import box_coder
from dff.models.nms import nms_top_k
from dff.models.precision import to_exact

RPN_STDS = (1.0, 1.0, 1.0, 1.0)


class RPNHead(nn.Module):
    """conv3x3 + ReLU, then per-anchor sigmoid logit (A) and deltas (4A); keys rpn_conv/rpn_cls/rpn_reg."""

    def __init__(self, in_channels: int, cfg: RPNConfig) -> None:
        super().__init__()
        self.rpn_conv = nn.Conv2d(in_channels, cfg.feat_channels, 3, padding=1)
        self.rpn_cls = nn.Conv2d(cfg.feat_channels, cfg.num_anchors, 1)
        self.rpn_reg = nn.Conv2d(cfg.feat_channels, cfg.num_anchors * 4, 1)
        for conv in (self.rpn_conv, self.rpn_cls, self.rpn_reg):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, H, W) -> logits (N, A, H, W), deltas (N, 4A, H, W)."""
        x = F.relu(self.rpn_conv(x))
        return self.rpn_cls(x), self.rpn_reg(x)


class ProposalGenerator(nn.Module):
    """Anchors + top-k + decode + clip + drop empty + NMS; no parameters (a module so it can be hooked)."""

    def __init__(self, cfg: RPNConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self._base = anchor_ops.base_anchors(cfg.anchor_base_size, cfg.anchor_scales, cfg.anchor_ratios)
        self._cache: dict[tuple, torch.Tensor] = {}

    def anchors(self, feat_h: int, feat_w: int, device: torch.device) -> torch.Tensor:
        """(H*W*A, 4) anchors for a feature map, cached per size and device."""
        key = (feat_h, feat_w, str(device))
        if key not in self._cache:
            self._cache[key] = anchor_ops.grid_anchors(self._base.to(device), feat_h, feat_w, self.cfg.stride)
        return self._cache[key]

    def forward(
        self, logits: torch.Tensor, deltas: torch.Tensor, img_shape: tuple[int, int], training: bool = False
    ) -> torch.Tensor:
        """One image's logits (A, H, W) and deltas (4A, H, W) -> proposals (n, 5): x1, y1, x2, y2, score.

        Top `nms_pre` scores, decode, clip, drop empty boxes, NMS, first `max_per_img` (in float32 at any
        precision: models/precision.py).
        """
        nms_pre = self.cfg.train_nms_pre if training else self.cfg.test_nms_pre
        max_per_img = self.cfg.train_max_per_img if training else self.cfg.test_max_per_img
        scores = to_exact(logits).permute(1, 2, 0).reshape(-1).sigmoid()
        deltas = to_exact(deltas).permute(1, 2, 0).reshape(-1, 4)
        anchors = self.anchors(logits.shape[1], logits.shape[2], logits.device)
        if 0 < nms_pre < scores.shape[0]:
            scores, order = scores.topk(nms_pre)
            deltas, anchors = deltas[order], anchors[order]
        boxes, scores = decode_nonempty(anchors, deltas, scores, img_shape)
        if boxes.numel() == 0:
            return boxes.new_zeros((0, 5))
        keep = nms_top_k(boxes, scores, self.cfg.nms_iou, max_per_img)
        return torch.cat([boxes[keep], scores[keep, None]], dim=1)


def decode_nonempty(
    anchors: torch.Tensor, deltas: torch.Tensor, scores: torch.Tensor, img_shape: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode (N, 4) deltas on their anchors, clip to img_shape, keep boxes with w > 0 and h > 0 (min_bbox_size 0)."""
    boxes = box_coder.decode(anchors, deltas, RPN_STDS, max_shape=img_shape)
    valid = (boxes[:, 2] - boxes[:, 0] > 0) & (boxes[:, 3] - boxes[:, 1] > 0)
    if not bool(valid.all()):
        boxes, scores = boxes[valid], scores[valid]
    return boxes, scores
