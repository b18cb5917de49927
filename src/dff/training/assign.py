"""mmdet's MaxIoUAssigner and RandomSampler (mmdet 2.28, docs/mmtracking_spec.md §1.3): which boxes learn from which
ground truth.

`assign` labels every box with the 1-based index of its ground truth (0 = background, -1 = ignored);
`sample` draws a fixed-size mix of positives and negatives from that assignment, optionally with the ground
truth itself added as proposals (RCNN).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import box_iou


@dataclass(frozen=True)
class AssignerConfig:
    """MaxIoUAssigner thresholds; `match_low_quality` and `gt_max_assign_all` keep mmdet's defaults (True)."""

    pos_iou: float
    neg_iou: float
    min_pos_iou: float
    match_low_quality: bool = True
    gt_max_assign_all: bool = True


@dataclass
class Assignment:
    """Per box: `gt_inds` (1-based GT index, 0 negative, -1 ignored), its best IoU, and its GT label (or -1)."""

    gt_inds: torch.Tensor  # (M,) int64
    max_overlaps: torch.Tensor  # (M,) float32
    labels: torch.Tensor | None  # (M,) int64, None when no GT labels were given (RPN)


def assign(
    boxes: torch.Tensor, gt_boxes: torch.Tensor, gt_labels: torch.Tensor | None, cfg: AssignerConfig
) -> Assignment:
    """MaxIoUAssigner.assign for boxes (M, 4+) against gt_boxes (G, 4); ignore_iof_thr=-1 (no ignored GT)."""
    boxes = boxes[:, :4]
    num_gts, num_boxes = gt_boxes.shape[0], boxes.shape[0]
    gt_inds = boxes.new_full((num_boxes,), -1, dtype=torch.long)
    if num_gts == 0 or num_boxes == 0:
        max_overlaps = boxes.new_zeros((num_boxes,))
        if num_gts == 0:
            gt_inds[:] = 0
        labels = None if gt_labels is None else boxes.new_full((num_boxes,), -1, dtype=torch.long)
        return Assignment(gt_inds, max_overlaps, labels)
    overlaps = box_iou(gt_boxes.float(), boxes.float())  # (G, M)
    max_overlaps, argmax_overlaps = overlaps.max(dim=0)
    gt_max_overlaps, gt_argmax_overlaps = overlaps.max(dim=1)
    gt_inds[(max_overlaps >= 0) & (max_overlaps < cfg.neg_iou)] = 0
    pos = max_overlaps >= cfg.pos_iou
    gt_inds[pos] = argmax_overlaps[pos] + 1
    if cfg.match_low_quality:
        # Each GT also claims its best-overlapping box(es), even below pos_iou; later GTs win ties, as in mmdet.
        for i in range(num_gts):
            if gt_max_overlaps[i] >= cfg.min_pos_iou:
                if cfg.gt_max_assign_all:
                    gt_inds[overlaps[i, :] == gt_max_overlaps[i]] = i + 1
                else:
                    gt_inds[gt_argmax_overlaps[i]] = i + 1
    labels = None
    if gt_labels is not None:
        labels = gt_inds.new_full((num_boxes,), -1)
        positive = gt_inds > 0
        labels[positive] = gt_labels[gt_inds[positive] - 1]
    return Assignment(gt_inds, max_overlaps, labels)


@dataclass(frozen=True)
class SamplerConfig:
    """RandomSampler: `num` boxes, at most `pos_fraction` of them positive (neg_pos_ub=-1: no negative cap)."""

    num: int
    pos_fraction: float
    add_gt_as_proposals: bool = False


@dataclass
class Sample:
    """The sampled boxes, positives first: `pos_boxes` with their GT boxes/labels, then `neg_boxes`."""

    pos_inds: torch.Tensor  # (P,) indices into the (GT-augmented) box list
    neg_inds: torch.Tensor  # (Q,)
    pos_boxes: torch.Tensor  # (P, 4)
    neg_boxes: torch.Tensor  # (Q, 4)
    pos_gt_boxes: torch.Tensor  # (P, 4)
    pos_gt_labels: torch.Tensor | None  # (P,) int64

    @property
    def boxes(self) -> torch.Tensor:
        """(P+Q, 4) positives then negatives: the order of the RoI targets."""
        return torch.cat([self.pos_boxes, self.neg_boxes], dim=0)


def _random_choice(gallery: torch.Tensor, num: int, generator: torch.Generator | None) -> torch.Tensor:
    """`num` distinct elements of `gallery` drawn uniformly (torch.randperm on the global or given RNG)."""
    perm = torch.randperm(gallery.numel(), generator=generator)[:num].to(gallery.device)
    return gallery[perm]


def _draw(candidates: torch.Tensor, num: int, generator: torch.Generator | None) -> torch.Tensor:
    if candidates.numel() > num:
        candidates = _random_choice(candidates, num, generator)
    return candidates.unique()


def sample(
    assignment: Assignment,
    boxes: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor | None,
    cfg: SamplerConfig,
    generator: torch.Generator | None = None,
) -> Sample:
    """RandomSampler.sample: up to num*pos_fraction positives, the rest negatives (mmdet BaseSampler order)."""
    boxes = boxes[:, :4]
    gt_inds, labels = assignment.gt_inds, assignment.labels
    if cfg.add_gt_as_proposals and gt_boxes.shape[0] > 0:
        if gt_labels is None:
            raise ValueError("gt_labels are required to add the ground truth as proposals")
        boxes = torch.cat([gt_boxes.to(boxes.dtype), boxes], dim=0)
        gt_inds = torch.cat([torch.arange(1, gt_boxes.shape[0] + 1, device=boxes.device), gt_inds])
        labels = torch.cat([gt_labels, labels]) if labels is not None else None
    num_expected_pos = int(cfg.num * cfg.pos_fraction)
    pos_inds = _draw(torch.nonzero(gt_inds > 0, as_tuple=False).flatten(), num_expected_pos, generator)
    num_expected_neg = cfg.num - pos_inds.numel()
    neg_inds = _draw(torch.nonzero(gt_inds == 0, as_tuple=False).flatten(), num_expected_neg, generator)
    pos_assigned = gt_inds[pos_inds] - 1
    if gt_boxes.shape[0] > 0:
        pos_gt_boxes = gt_boxes[pos_assigned].to(boxes.dtype)
    else:
        pos_gt_boxes = boxes.new_zeros((0, 4))
    return Sample(
        pos_inds=pos_inds,
        neg_inds=neg_inds,
        pos_boxes=boxes[pos_inds],
        neg_boxes=boxes[neg_inds],
        pos_gt_boxes=pos_gt_boxes,
        pos_gt_labels=None if labels is None else labels[pos_inds],
    )
