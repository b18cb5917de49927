"""Inference-only versions of the RPN, proposal filtering and RoI head, with the same outputs as the originals.

- `nms_top_k`: greedy NMS decides a box only from higher-scoring boxes, so when only the first k survivors are
  kept (300 proposals, 100 detections), NMS over the best-scoring few hundred candidates gives the same survivors
  as NMS over all of them; the candidate set grows until k survive or all are used.
- `roi_align_channels_last`: mmcv/torchvision RoIAlign (aligned, fixed sampling ratio) as one weighted
  `embedding_bag` over (H*W, C) rows of a channels_last map. Each output bin is a weighted sum of at most
  (2 samples x 2 neighbours) per axis = 16 feature rows; the weights factor into a y part and an x part, so they are
  built per axis. Multi-threaded and about ten times faster than torchvision's single-threaded CPU kernel.
- `FastRoIHead` decodes only the (RoI, class) pairs that pass the score threshold; the box head's first FC takes
  the RoI features bin-major (its weight is permuted once), which is the layout the embedding bag produces.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from dff.models import box_coder
from dff.models.packed import PackedConv, PackedLinear
from dff.models.roi_head import Detections, RoIHead
from dff.models.rpn import ProposalGenerator, RPNHead, decode_nonempty


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


def _axis_samples(
    start: torch.Tensor, length: torch.Tensor, bins: int, grid: int, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-axis bilinear taps of RoIAlign: (R,) roi start/length in feature pixels -> index, weight (R, bins, 2*grid).

    torchvision's rules: a sample outside [-1, size] contributes 0; otherwise it is clamped to >= 0, and one at or
    beyond size-1 reads row size-1 with full weight.
    """
    step = length / bins
    p = torch.arange(bins, dtype=start.dtype, device=start.device)[None, :, None]
    i = torch.arange(grid, dtype=start.dtype, device=start.device)[None, None, :]
    c = start[:, None, None] + p * step[:, None, None] + (i + 0.5) * step[:, None, None] / grid
    inside = ((c >= -1.0) & (c <= size)).to(c.dtype)
    c = c.clamp(min=0)
    low = c.floor().long()
    last = low >= size - 1
    low = low.clamp(max=size - 1)
    high = torch.where(last, low, low + 1)
    frac = torch.where(last, torch.zeros_like(c), c - low.to(c.dtype))
    index = torch.stack([low, high], dim=-1).flatten(-2)
    weight = (torch.stack([1 - frac, frac], dim=-1) * inside[..., None]).flatten(-2)
    return index, weight


def roi_align_channels_last(
    feats: torch.Tensor, rois: torch.Tensor, output_size: int, spatial_scale: float, sampling_ratio: int
) -> torch.Tensor:
    """`torchvision.ops.roi_align(feats, rois, output_size, spatial_scale, sampling_ratio, aligned=True)` returned
    bin-major as (R, output_size**2, C) instead of (R, C, output_size, output_size)."""
    n, c, h, w = feats.shape
    if sampling_ratio <= 0:
        raise ValueError("roi_align_channels_last needs a fixed sampling_ratio > 0")
    table = feats.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1).reshape(n * h * w, c)
    r = rois.shape[0]
    x1, y1 = rois[:, 1] * spatial_scale - 0.5, rois[:, 2] * spatial_scale - 0.5
    x2, y2 = rois[:, 3] * spatial_scale - 0.5, rois[:, 4] * spatial_scale - 0.5
    iy, wy = _axis_samples(y1, y2 - y1, output_size, sampling_ratio, h)
    ix, wx = _axis_samples(x1, x2 - x1, output_size, sampling_ratio, w)
    base = rois[:, 0].long()[:, None, None, None, None] * (h * w)
    index = base + iy[:, :, None, :, None] * w + ix[:, None, :, None, :]
    weight = wy[:, :, None, :, None] * wx[:, None, :, None, :] * (1.0 / (sampling_ratio * sampling_ratio))
    bins = r * output_size * output_size
    out = F.embedding_bag(
        index.reshape(bins, -1), table, per_sample_weights=weight.reshape(bins, -1).to(table.dtype), mode="sum"
    )
    return out.view(r, output_size * output_size, c)


class FastRPNHead(nn.Module):
    """RPNHead with packed convs; rpn_cls and rpn_reg run as one 1x1 conv whose output is split."""

    def __init__(self, head: RPNHead) -> None:
        super().__init__()
        self.num_anchors = head.rpn_cls.out_channels
        self.rpn_conv = PackedConv(head.rpn_conv, "relu")
        both = nn.Conv2d(head.rpn_cls.in_channels, self.num_anchors * 5, 1)
        with torch.no_grad():
            both.weight.copy_(torch.cat([head.rpn_cls.weight, head.rpn_reg.weight]))
            both.bias.copy_(torch.cat([head.rpn_cls.bias, head.rpn_reg.bias]))
        self.rpn_cls_reg = PackedConv(both.to(head.rpn_cls.weight.device))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, H, W) -> logits (N, A, H, W), deltas (N, 4A, H, W) (channels_last views)."""
        out = self.rpn_cls_reg(self.rpn_conv(x))
        return out[:, : self.num_anchors], out[:, self.num_anchors :]


class FastProposalGenerator(ProposalGenerator):
    """Test-time proposals as ProposalGenerator, with top-k selection and NMS stopped at max_per_img."""

    def forward(
        self, logits: torch.Tensor, deltas: torch.Tensor, img_shape: tuple[int, int], training: bool = False
    ) -> torch.Tensor:
        if training:
            raise RuntimeError("FastProposalGenerator is inference-only")
        cfg = self.cfg
        scores = logits.float().permute(1, 2, 0).reshape(-1).sigmoid()
        deltas = deltas.float().permute(1, 2, 0).reshape(-1, 4)
        anchors = self.anchors(logits.shape[1], logits.shape[2], logits.device)
        if 0 < cfg.test_nms_pre < scores.shape[0]:
            scores, order = scores.topk(cfg.test_nms_pre)
            deltas, anchors = deltas[order], anchors[order]
        boxes, scores = decode_nonempty(anchors, deltas, scores, img_shape)
        if boxes.numel() == 0:
            return boxes.new_zeros((0, 5))
        keep = nms_top_k(boxes, scores, cfg.nms_iou, cfg.test_max_per_img)
        return torch.cat([boxes[keep], scores[keep, None]], dim=1)


class FastRoIHead(nn.Module):
    """RoIHead for inference: embedding-bag RoIAlign, bin-major FC1, fused FC+ReLU, pruned decoding, top-k NMS."""

    def __init__(self, head: RoIHead) -> None:
        super().__init__()
        self.cfg, self.num_classes, self.spatial_scale = head.cfg, head.num_classes, head.spatial_scale
        bbox, s2 = head.bbox_head, head.cfg.output_size**2
        fc1 = bbox.shared_fcs[0]
        weight = fc1.weight.detach().view(fc1.out_features, -1, s2).transpose(1, 2).reshape(fc1.out_features, -1)
        self.fc1 = PackedLinear(weight, fc1.bias, "relu")
        self.fc2 = PackedLinear(bbox.shared_fcs[1].weight, bbox.shared_fcs[1].bias, "relu")
        self.num_logits = bbox.fc_cls.out_features
        self.cls_reg = PackedLinear(
            torch.cat([bbox.fc_cls.weight, bbox.fc_reg.weight]), torch.cat([bbox.fc_cls.bias, bbox.fc_reg.bias])
        )

    def forward(self, feats: torch.Tensor, rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (N, C, H, W) and rois (R, 5) -> class logits (R, C+1), deltas (R, 4C), as RoIHead."""
        x = roi_align_channels_last(
            feats, rois.float(), self.cfg.output_size, self.spatial_scale, self.cfg.sampling_ratio
        )
        x = self.cls_reg(self.fc2(self.fc1(x.flatten(1)))).float()
        return x[:, : self.num_logits], x[:, self.num_logits :]

    def detect(
        self, feats: torch.Tensor, proposals: torch.Tensor, img_shape: tuple[int, int], scale_factor: np.ndarray
    ) -> Detections:
        """As RoIHead.detect: softmax, keep scores > score_thr, decode, rescale, class-aware NMS, top max_per_img."""
        rois_xyxy = proposals[:, :4]
        if rois_xyxy.shape[0] == 0:
            return _no_detections(feats.device)
        rois = torch.cat([rois_xyxy.new_zeros((rois_xyxy.shape[0], 1)), rois_xyxy], dim=1)
        cls_score, bbox_pred = self(feats, rois)
        scores = F.softmax(cls_score, dim=-1)[:, :-1]
        pairs = (scores > self.cfg.score_thr).nonzero(as_tuple=False)
        if pairs.shape[0] == 0:
            return _no_detections(feats.device)
        roi_idx, labels = pairs[:, 0], pairs[:, 1]
        scores = scores[roi_idx, labels]
        deltas = bbox_pred.view(bbox_pred.shape[0], -1, 4)[roi_idx, labels]
        boxes = box_coder.decode(rois_xyxy[roi_idx], deltas, self.cfg.target_stds, max_shape=img_shape)
        boxes = boxes / boxes.new_tensor(scale_factor)
        offsets = labels.to(boxes) * (boxes.max() + 1)
        keep = nms_top_k(boxes + offsets[:, None], scores, self.cfg.nms_iou, self.cfg.max_per_img)
        return Detections(boxes[keep], scores[keep], labels[keep])


def _no_detections(device: torch.device) -> Detections:
    return Detections(
        torch.zeros((0, 4), device=device),
        torch.zeros((0,), device=device),
        torch.zeros((0,), dtype=torch.int64, device=device),
    )
