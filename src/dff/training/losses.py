"""The DFF training forward and its Faster R-CNN losses (docs/mmtracking_spec.md §3.1 forward_train, 3.6, 1.3
train_cfg).

Per pair: flow from (key, reference); backbone features of the reference warped to the key (DET pairs keep
the unwarped features through `0 * warped + ref`, so the FlowNet stays in the graph); RPN and RCNN losses
against the key image's ground truth. The losses follow mmdet's reductions: every per-element loss is summed
over the batch and divided by mmdet's avg_factor (+ float32 eps, as mmdet's `weight_reduce_loss`).

Spec pitfalls handled here: 19 (docs/pitfalls.md maps each to its code and tests).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dff.data.train_dataset import TrainPair
from dff.models import box_coder
from dff.models.anchors import inside_flags
from dff.models.detector import DFF
from dff.models.rpn import RPN_STDS
from dff.training.assign import AssignerConfig, SamplerConfig, assign, sample

EPS = torch.finfo(torch.float32).eps
LOSS_NAMES = ("loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox")


@dataclass(frozen=True)
class TargetConfig:
    """Assigner and sampler settings of the RPN and RCNN stages (mmdet train_cfg)."""

    rpn_assigner: AssignerConfig
    rpn_sampler: SamplerConfig
    rcnn_assigner: AssignerConfig
    rcnn_sampler: SamplerConfig

    @classmethod
    def from_model(cls, net: DFF) -> TargetConfig:
        rpn, roi = net.cfg.rpn, net.cfg.roi
        return cls(
            rpn_assigner=AssignerConfig(rpn.pos_iou, rpn.neg_iou, rpn.min_pos_iou),
            rpn_sampler=SamplerConfig(rpn.num_samples, rpn.pos_fraction, add_gt_as_proposals=False),
            rcnn_assigner=AssignerConfig(
                roi.pos_iou, roi.neg_iou, roi.min_pos_iou, match_low_quality=roi.match_low_quality
            ),
            rcnn_sampler=SamplerConfig(roi.num_samples, roi.pos_fraction, add_gt_as_proposals=True),
        )


def smooth_l1(pred: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    """Element-wise smooth L1 as mmdet: 0.5 d^2 / beta below beta, d - 0.5 beta above."""
    diff = (pred - target).abs()
    return torch.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)


def dff_features(
    net: DFF,
    img: torch.Tensor,
    ref_img: torch.Tensor,
    img_shape: tuple[int, int],
    is_video: torch.Tensor,
    flow: torch.Tensor | None = None,
) -> torch.Tensor:
    """Features for the key images (N, C, h, w): the DFF stages with the reference image as the key frame.

    `is_video` (N,) bool: for False (DET) rows the features are `0 * warped + ref_feats`, as mmtracking does (the
    FlowNet stays in the graph). `flow` (N, 2, Hp, Wp): warp by this instead of the FlowNet's flow (it must keep the
    FlowNet in the graph when the FlowNet trains, as `0 * flow` does).
    """
    ref = net.key_features(ref_img, img_shape)
    warped = net.propagate(img, ref, img_shape)[0] if flow is None else net.warp(ref.feats, flow)
    if bool(is_video.all()):
        return warped
    return torch.where(is_video.view(-1, 1, 1, 1), warped, warped * 0 + ref.feats)


class _Sums:
    """Running numerators and avg_factors of mmdet's batch-level loss reductions."""

    def __init__(self, device: torch.device) -> None:
        self.num = {k: torch.zeros((), device=device) for k in LOSS_NAMES}
        self.den = defaultdict(float)
        self.correct = 0.0

    def add(self, name: str, value: torch.Tensor, count: float) -> None:
        self.num[name] = self.num[name] + value
        self.den[name] += count

    def result(self) -> dict[str, torch.Tensor]:
        out = {k: self.num[k] / (self.den[k] + EPS) for k in LOSS_NAMES}
        out["acc"] = torch.tensor(100.0 * self.correct / max(self.den["loss_cls"], 1.0))
        return out


class DFFLoss(nn.Module):
    """`forward(pairs) -> {loss_rpn_cls, loss_rpn_bbox, loss_cls, loss_bbox, acc}` for a list of TrainPairs.

    Pairs of equal size run through the backbone and FlowNet as one batch. Wrap this module (not the DFF)
    in DistributedDataParallel: it owns the DFF as `net`, so state-dict keys gain a `net.` prefix.
    """

    def __init__(self, net: DFF) -> None:
        super().__init__()
        self.net = net
        self.targets = TargetConfig.from_model(net)  # the samplers draw from torch's global RNG, as mmdet's

    def forward(self, pairs: list[TrainPair]) -> dict[str, torch.Tensor]:
        device = next(self.net.parameters()).device
        sums = _Sums(device)
        groups: dict[tuple, list[TrainPair]] = defaultdict(list)
        for p in pairs:
            groups[(tuple(p.img.shape), tuple(p.ref_img.shape), p.img_meta.img_shape)].append(p)
        for group in groups.values():
            img = torch.stack([p.img for p in group]).to(device)
            ref = torch.stack([p.ref_img for p in group]).to(device)
            feats = self.features(group, img, ref)
            gts = [(p.gt_boxes.to(device), p.gt_labels.to(device)) for p in group]
            proposals = self._rpn_losses(feats, group, gts, sums)
            self._rcnn_losses(feats, proposals, gts, sums)
        return sums.result()

    def features(self, group: list[TrainPair], img: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """The key images' features (N, C, h, w) of a same-size group: `dff_features`. A subclass may form them
        otherwise (benchmarks/exact_flow_bound.py warps by the synthetic generator's exact flow)."""
        is_video = torch.tensor([p.is_video_data for p in group], device=img.device)
        return dff_features(self.net, img, ref, group[0].img_meta.img_shape, is_video)

    def _rpn_losses(self, feats: torch.Tensor, group: list[TrainPair], gts: list, sums: _Sums) -> list[torch.Tensor]:
        """Adds RPN losses of a same-size group; returns each image's training proposals (n, 5)."""
        det = self.net.detector
        logits, deltas = det.rpn_head(feats)
        logits, deltas = logits.float(), deltas.float()
        n, _, h, w = logits.shape
        anchors = det.proposal_generator.anchors(h, w, feats.device)
        flat_logits = logits.permute(0, 2, 3, 1).reshape(n, -1)
        flat_deltas = deltas.permute(0, 2, 3, 1).reshape(n, -1, 4)
        proposals = []
        beta = self.net.cfg.rpn.smooth_l1_beta
        for i, (p, (gt_boxes, _)) in enumerate(zip(group, gts)):
            img_shape = p.img_meta.img_shape
            inside = torch.nonzero(inside_flags(anchors, img_shape), as_tuple=False).flatten()
            valid = anchors[inside]
            a = assign(valid, gt_boxes, None, self.targets.rpn_assigner)
            s = sample(a, valid, gt_boxes, None, self.targets.rpn_sampler)
            pos, neg = inside[s.pos_inds], inside[s.neg_inds]
            cls_logits = torch.cat([flat_logits[i, pos], flat_logits[i, neg]])
            cls_target = torch.cat([cls_logits.new_ones(pos.numel()), cls_logits.new_zeros(neg.numel())])
            count = float(pos.numel() + neg.numel())
            sums.add("loss_rpn_cls", F.binary_cross_entropy_with_logits(cls_logits, cls_target, reduction="sum"), count)
            target = box_coder.encode(s.pos_boxes, s.pos_gt_boxes, RPN_STDS)
            sums.add("loss_rpn_bbox", smooth_l1(flat_deltas[i, pos], target, beta).sum(), count)
            proposals.append(det.proposal_generator(logits[i].detach(), deltas[i].detach(), img_shape, training=True))
        return proposals

    def _rcnn_losses(self, feats: torch.Tensor, proposals: list[torch.Tensor], gts: list, sums: _Sums) -> None:
        """Adds RCNN losses of a same-size group: GT-augmented proposals, 512 sampled RoIs per image."""
        num_classes = self.net.cfg.num_classes
        rois, labels, targets = [], [], []
        for i, (props, (gt_boxes, gt_labels)) in enumerate(zip(proposals, gts)):
            a = assign(props, gt_boxes, gt_labels, self.targets.rcnn_assigner)
            s = sample(a, props, gt_boxes, gt_labels, self.targets.rcnn_sampler)
            boxes = s.boxes
            rois.append(torch.cat([boxes.new_full((boxes.shape[0], 1), float(i)), boxes], dim=1))
            neg_labels = gt_labels.new_full((s.neg_boxes.shape[0],), num_classes)
            labels.append(torch.cat([s.pos_gt_labels, neg_labels]))
            targets.append(box_coder.encode(s.pos_boxes, s.pos_gt_boxes, self.net.cfg.roi.target_stds))
        rois_t, labels_t = torch.cat(rois), torch.cat(labels)
        cls_score, bbox_pred = self.net.detector.roi_head(feats, rois_t)
        cls_score, bbox_pred = cls_score.float(), bbox_pred.float()
        count = float(rois_t.shape[0])
        sums.add("loss_cls", F.cross_entropy(cls_score, labels_t, reduction="sum"), count)
        sums.correct += float((cls_score.detach().argmax(1) == labels_t).sum())
        pos = labels_t < num_classes
        pos_pred = bbox_pred.view(bbox_pred.shape[0], -1, 4)[pos, labels_t[pos]]
        sums.add("loss_bbox", smooth_l1(pos_pred, torch.cat(targets), self.net.cfg.roi.smooth_l1_beta).sum(), count)
