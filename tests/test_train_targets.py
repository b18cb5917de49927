"""Assigner, sampler, loss reductions and LR schedule of the training recipe (spec 1.3, 1.7, 3.6)."""

from __future__ import annotations

import math

import pytest
import torch

from dff.training.assign import AssignerConfig, SamplerConfig, assign, sample
from dff.training.losses import smooth_l1
from dff.training.schedule import StepWarmupSchedule

RPN = AssignerConfig(pos_iou=0.7, neg_iou=0.3, min_pos_iou=0.3)
RCNN = AssignerConfig(pos_iou=0.5, neg_iou=0.5, min_pos_iou=0.5)


def test_assign_thresholds_and_low_quality_matches():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [100.0, 100.0, 110.0, 110.0]])
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # IoU 1 with gt 0 -> positive
            [0.0, 0.0, 10.0, 20.0],  # IoU 0.5 with gt 0 -> between thresholds: ignored
            [50.0, 50.0, 60.0, 60.0],  # IoU 0 -> negative
            [100.0, 100.0, 110.0, 125.0],  # IoU 0.4 with gt 1: below 0.7 but gt 1's best -> low-quality positive
        ]
    )
    a = assign(boxes, gt, torch.tensor([3, 7]), RPN)
    assert a.gt_inds.tolist() == [1, -1, 0, 2]
    assert a.labels.tolist() == [3, -1, -1, 7]
    assert a.max_overlaps.tolist() == pytest.approx([1.0, 0.5, 0.0, 0.4])
    no_lq = assign(boxes, gt, None, AssignerConfig(0.7, 0.3, 0.3, match_low_quality=False))
    assert no_lq.gt_inds.tolist() == [1, -1, 0, -1]
    assert no_lq.labels is None


def test_assign_gt_max_assign_all_takes_every_tied_box():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    boxes = torch.tensor([[0.0, 0.0, 10.0, 25.0], [0.0, -15.0, 10.0, 10.0], [0.0, 0.0, 10.0, 30.0]])  # 0.4, 0.4, 0.33
    assert assign(boxes, gt, None, RPN).gt_inds.tolist() == [1, 1, -1]
    one = AssignerConfig(0.7, 0.3, 0.3, gt_max_assign_all=False)
    assert assign(boxes, gt, None, one).gt_inds.tolist() == [1, -1, -1]
    # RCNN (min_pos_iou 0.5): a best IoU of 0.4 claims nothing and stays a negative
    assert assign(boxes, gt, None, RCNN).gt_inds.tolist() == [0, 0, 0]


def test_assign_without_ground_truth_makes_everything_negative():
    a = assign(
        torch.rand(5, 4) * 10 + torch.tensor([0, 0, 20, 20]), torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), RCNN
    )
    assert a.gt_inds.tolist() == [0] * 5 and a.labels.tolist() == [-1] * 5


def test_sampler_counts_order_and_gt_as_proposals():
    torch.manual_seed(0)
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    pos = torch.tensor([[0.0, 0.0, 10.0, 10.0 + i * 0.1] for i in range(10)])
    neg = torch.tensor([[50.0 + i, 50.0, 60.0 + i, 60.0] for i in range(20)])
    boxes = torch.cat([pos, neg])
    a = assign(boxes, gt, torch.tensor([4]), RCNN)
    s = sample(a, boxes, gt, torch.tensor([4]), SamplerConfig(num=8, pos_fraction=0.5))
    assert s.pos_inds.numel() == 4 and s.neg_inds.numel() == 4
    assert (s.pos_inds < 10).all() and (s.neg_inds >= 10).all()
    assert s.pos_inds.tolist() == sorted(s.pos_inds.tolist())  # mmdet's .unique() sorts
    assert s.pos_gt_labels.tolist() == [4] * 4 and torch.equal(s.pos_gt_boxes, gt.expand(4, 4))
    assert torch.equal(s.boxes[:4], s.pos_boxes)
    a2 = assign(boxes[8:], gt, torch.tensor([4]), RCNN)  # 2 positives: the rest of the 8 are negatives
    s2 = sample(a2, boxes[8:], gt, torch.tensor([4]), SamplerConfig(num=8, pos_fraction=0.5))
    assert (s2.pos_inds.numel(), s2.neg_inds.numel()) == (2, 6)
    s3 = sample(a2, boxes[8:], gt, torch.tensor([4]), SamplerConfig(num=8, pos_fraction=0.5, add_gt_as_proposals=True))
    assert s3.pos_inds.tolist() == [0, 1, 2]  # index 0 is the GT box added in front of the proposals
    assert torch.equal(s3.pos_boxes[0], gt[0]) and s3.neg_inds.numel() == 5


def test_smooth_l1_matches_mmdet_formula():
    pred = torch.tensor([0.0, 0.05, 0.5, 2.0])
    out = smooth_l1(pred, torch.zeros(4), beta=1.0 / 9.0)
    beta = 1.0 / 9.0
    assert out.tolist() == pytest.approx([0.0, 0.5 * 0.05**2 / beta, 0.5 - 0.5 * beta, 2.0 - 0.5 * beta])


def test_schedule_warmup_and_steps_as_mmcv():
    s = StepWarmupSchedule(base_lr=0.01)
    assert s.lr(0, 0) == pytest.approx(0.01 / 3)
    assert s.lr(0, 250) == pytest.approx(0.01 * (1 - 0.5 * (2 / 3)))
    assert s.lr(0, 499) == pytest.approx(0.01 * (1 - (1 / 500) * (2 / 3)))
    assert s.lr(1, 500) == pytest.approx(0.01)
    assert [s.regular_lr(e) for e in range(7)] == pytest.approx([0.01, 0.01, 1e-3, 1e-3, 1e-3, 1e-4, 1e-4])
    assert s.lr(2, 100) == pytest.approx(1e-3 * (1 - 0.8 * (2 / 3)))  # warm-up scales the epoch's own LR
    opt = torch.optim.SGD(
        [
            {"params": [torch.nn.Parameter(torch.zeros(1))]},
            {"params": [torch.nn.Parameter(torch.zeros(1))], "lr_mult": 0.25},
        ],
        lr=1.0,
    )
    assert s.apply(opt, 5, 10_000) == pytest.approx(1e-4) and opt.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.25e-4)  # a group's lr_mult (the FlowNet's, in training)
    assert math.isclose(StepWarmupSchedule(0.04, warmup_iters=0).lr(0, 0), 0.04)
