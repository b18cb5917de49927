"""RoI head: RoIAlign (aligned, sampling 2) + mmdet Shared2FCBBoxHead, background class last (docs/mmtracking_spec.md
§3.4).

Spec pitfalls handled here: 3, 10, 11, 12 (docs/pitfalls.md maps each to its code and tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from dff.config import RoIConfig
from dff.data.transforms import ImageMeta
from dff.models import box_coder
from dff.models.nms import batched_nms
from dff.models.precision import to_exact


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


class RoIHead(nn.Module):
    """RoIAlign features -> box head, plus mmdet's test-time post-processing (rescale, then class-aware NMS).

    `roi_align` and `bbox_head` may be injected (the fast path's kernels, models/fast.py); the post-processing
    in `detect` is the one both paths run.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        stride: int,
        cfg: RoIConfig,
        roi_align: nn.Module | None = None,
        bbox_head: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.spatial_scale = 1.0 / stride
        self.roi_align = roi_align or torchvision.ops.RoIAlign(
            cfg.output_size, self.spatial_scale, cfg.sampling_ratio, aligned=True
        )
        self.bbox_head = bbox_head or BBoxHead(in_channels, num_classes, cfg)

    def forward(self, feats: torch.Tensor, rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (N, C, H, W) and rois (R, 5) [batch_idx, x1, y1, x2, y2] in resized-image pixels -> class
        logits (R, C+1), deltas (R, 4C)."""
        return self.bbox_head(self.roi_align(feats, rois))

    def detect(
        self, feats: torch.Tensor, proposals: Sequence[torch.Tensor], metas: Sequence[ImageMeta]
    ) -> list[Detections]:
        """N images: features (N, C, H, W) and each image's proposals (n_i, 5) -> each image's detections in original
        pixels. RoIAlign and the box head run once over every image's RoIs; the post-processing per image."""
        rois_xyxy = [to_exact(p[:, :4]) for p in proposals]
        counts = [r.shape[0] for r in rois_xyxy]
        if sum(counts) == 0:
            return [_empty(feats.device) for _ in metas]
        index = torch.repeat_interleave(
            torch.arange(len(counts), device=feats.device), torch.tensor(counts, device=feats.device)
        )
        rois = torch.cat([index[:, None].to(rois_xyxy[0]), torch.cat(rois_xyxy)], dim=1)
        cls_score, bbox_pred = self(feats, rois)
        return [
            self.postprocess(c, b, r, m)
            for c, b, r, m in zip(cls_score.split(counts), bbox_pred.split(counts), rois_xyxy, metas, strict=True)
        ]

    def postprocess(
        self, cls_score: torch.Tensor, bbox_pred: torch.Tensor, rois_xyxy: torch.Tensor, meta: ImageMeta
    ) -> Detections:
        """One image's box-head outputs on its RoIs (n, 4) -> its detections (docs/mmtracking_spec.md §3.4 RCNN
        post-processing).

        Softmax, keep (RoI, class) pairs scoring > score_thr, decode only those, rescale to the original image,
        class-aware NMS, first max_per_img (float32 at any precision: models/precision.py).
        """
        if rois_xyxy.shape[0] == 0:
            return _empty(rois_xyxy.device)
        scores = F.softmax(to_exact(cls_score), dim=-1)[:, :-1]
        pairs = (scores > self.cfg.score_thr).nonzero(as_tuple=False)
        if pairs.shape[0] == 0:
            return _empty(rois_xyxy.device)
        roi_idx, labels = pairs[:, 0], pairs[:, 1]
        scores = scores[roi_idx, labels]
        deltas = to_exact(bbox_pred).view(bbox_pred.shape[0], -1, 4)[roi_idx, labels]
        boxes = box_coder.decode(rois_xyxy[roi_idx], deltas, self.cfg.target_stds, max_shape=meta.img_shape)
        boxes = boxes / boxes.new_tensor(meta.scale_factor)
        keep = batched_nms(boxes, scores, labels, self.cfg.nms_iou, self.cfg.max_per_img)
        return Detections(boxes[keep], scores[keep], labels[keep])


def _empty(device: torch.device) -> Detections:
    return Detections(
        torch.zeros((0, 4), device=device),
        torch.zeros((0,), device=device),
        torch.zeros((0,), dtype=torch.int64, device=device),
    )
