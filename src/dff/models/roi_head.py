"""RoI head: RoIAlign (aligned, sampling 2) + mmdet Shared2FCBBoxHead, background class last (spec 3.4)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from dff.config import RoIConfig
from dff.models import box_coder


@dataclass
class Detections:
    """One image's detections in original-image pixels, sorted by descending score."""

    boxes: torch.Tensor  # (N, 4) float32 x1, y1, x2, y2
    scores: torch.Tensor  # (N,)
    labels: torch.Tensor  # (N,) int64 class index, background excluded


class BBoxHead(nn.Module):
    """flatten -> fc+ReLU -> fc+ReLU -> fc_cls (C+1, background last) and fc_reg (4C, class-specific)."""

    def __init__(self, in_channels: int, num_classes: int, cfg: RoIConfig) -> None:
        super().__init__()
        flat = in_channels * cfg.output_size * cfg.output_size
        self.shared_fcs = nn.ModuleList([nn.Linear(flat, cfg.fc_channels), nn.Linear(cfg.fc_channels, cfg.fc_channels)])
        self.fc_cls = nn.Linear(cfg.fc_channels, num_classes + 1)
        self.fc_reg = nn.Linear(cfg.fc_channels, num_classes * 4)
        for fc in self.shared_fcs:
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)
        nn.init.normal_(self.fc_cls.weight, std=0.01)
        nn.init.normal_(self.fc_reg.weight, std=0.001)
        nn.init.zeros_(self.fc_cls.bias)
        nn.init.zeros_(self.fc_reg.bias)

    def forward(self, roi_feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(R, C, 7, 7) -> class logits (R, C+1), deltas (R, 4C)."""
        x = roi_feats.flatten(1)
        for fc in self.shared_fcs:
            x = F.relu(fc(x))
        return self.fc_cls(x), self.fc_reg(x)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou: float) -> torch.Tensor:
    """mmcv class-aware NMS: one NMS over boxes offset by label * (max_coord + 1); kept indices by score."""
    offsets = labels.to(boxes) * (boxes.max() + 1)
    return torchvision.ops.nms(boxes + offsets[:, None], scores, iou)


class RoIHead(nn.Module):
    """Box head on RoIAlign features plus mmdet's test-time post-processing (rescale, then NMS)."""

    def __init__(self, in_channels: int, num_classes: int, stride: int, cfg: RoIConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.spatial_scale = 1.0 / stride
        self.bbox_head = BBoxHead(in_channels, num_classes, cfg)

    def roi_features(self, feats: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """rois (R, 5) [batch_idx, x1, y1, x2, y2] in resized-image pixels -> (R, C, 7, 7)."""
        return torchvision.ops.roi_align(
            feats,
            rois,
            output_size=self.cfg.output_size,
            spatial_scale=self.spatial_scale,
            sampling_ratio=self.cfg.sampling_ratio,
            aligned=True,
        )

    def forward(self, feats: torch.Tensor, rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (N, C, H, W) and rois (R, 5) -> class logits (R, C+1), deltas (R, 4C)."""
        return self.bbox_head(self.roi_features(feats, rois))

    def detect(
        self, feats: torch.Tensor, proposals: torch.Tensor, img_shape: tuple[int, int], scale_factor: np.ndarray
    ) -> Detections:
        """One image: proposals (n, 5) -> detections in original pixels (spec 3.4 RCNN post-processing)."""
        boxes_all = proposals[:, :4]
        if boxes_all.shape[0] == 0:
            return _empty(feats.device)
        rois = torch.cat([boxes_all.new_zeros((boxes_all.shape[0], 1)), boxes_all], dim=1)
        cls_score, bbox_pred = self(feats, rois)
        scores = F.softmax(cls_score, dim=-1)
        boxes = box_coder.decode(boxes_all, bbox_pred, self.cfg.target_stds, max_shape=img_shape)
        boxes = (boxes.view(boxes.size(0), -1, 4) / boxes.new_tensor(scale_factor)).view(-1, 4)
        scores = scores[:, :-1].reshape(-1)
        labels = torch.arange(self.num_classes, device=feats.device).repeat(proposals.shape[0])
        keep = (scores > self.cfg.score_thr).nonzero(as_tuple=False).squeeze(1)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        if boxes.numel() == 0:
            return _empty(feats.device)
        keep = batched_nms(boxes, scores, labels, self.cfg.nms_iou)[: self.cfg.max_per_img]
        return Detections(boxes[keep], scores[keep], labels[keep])


def _empty(device: torch.device) -> Detections:
    return Detections(
        torch.zeros((0, 4), device=device),
        torch.zeros((0,), device=device),
        torch.zeros((0,), dtype=torch.int64, device=device),
    )
