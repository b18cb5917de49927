"""Small checks for spec pitfalls that had no test of their own (docs/pitfalls.md maps all 23)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import dff
from dff.models.detector import DFF
from dff.models.nms import batched_nms
from dff.models.rpn import decode_nonempty


def test_pitfall5_batchnorm_eps_and_eval_mode_in_training():
    net = DFF(dff.preset("r50_dc5")).train()
    bns = [m for m in net.detector.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 53
    assert {m.eps for m in bns} == {1e-5} and not any(m.training for m in bns)


def test_pitfall6_neck_is_relu_of_a_3x3_conv_to_512_channels():
    neck = DFF(dff.preset("r50_dc5")).detector.neck.eval()
    x = torch.randn(1, 2048, 5, 7)
    conv = neck.convs[0].conv
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.padding) == (2048, 512, (3, 3), (1, 1))
    with torch.inference_mode():
        out = neck(x)
        torch.testing.assert_close(out, F.relu(conv(x)))
    assert out.shape == (1, 512, 5, 7) and (out == 0).any() and (out > 0).any()


def test_pitfall9_rpn_filtering_values_and_only_empty_boxes_removed():
    rpn = dff.preset("r50_dc5").rpn
    assert (rpn.test_nms_pre, rpn.nms_iou, rpn.test_max_per_img, rpn.train_max_per_img) == (6000, 0.7, 300, 1000)
    anchors = torch.tensor([[10.0, 10.0, 10.0001, 20.0], [-20.0, 5.0, -10.0, 15.0], [0.0, 0.0, 8.0, 8.0]])
    boxes, scores = decode_nonempty(anchors, torch.zeros(3, 4), torch.tensor([0.3, 0.2, 0.1]), (40, 60))
    # the 1e-4-wide box stays (torchvision's min_size=1e-3 would drop it); the one clipped to width 0 goes
    assert scores.tolist() == [0.30000001192092896, 0.10000000149011612]
    assert 0 < (boxes[0, 2] - boxes[0, 0]).item() < 1e-3


def test_pitfall12_class_aware_nms_suppresses_within_a_class_only():
    box = torch.tensor([[10.0, 10.0, 50.0, 50.0]])
    boxes = torch.cat([box, box + 1, box])
    keep = batched_nms(boxes, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([3, 3, 7]), 0.5, 100)
    assert keep.tolist() == [0, 2]  # the near-duplicate of the same label goes; the other label's copy stays
    assert dff.preset("r50_dc5").roi.score_thr == 1e-4 and dff.preset("r50_dc5").roi.max_per_img == 100


def test_pitfall13_nms_keeps_a_box_at_exactly_the_iou_threshold():
    """mmcv suppresses when inter > thr * union: at IoU exactly 0.5 (inter 1, union 2) both boxes stay."""
    boxes = torch.tensor([[0.0, 0.0, 2.0, 1.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.25, 1.0]])
    keep = batched_nms(boxes[:2], torch.tensor([0.9, 0.8]), torch.tensor([0, 0]), 0.5, 100)
    assert keep.tolist() == [0, 1]
    # over the threshold (IoU 1.25 / 2 = 0.625 against the first box) suppresses
    keep = batched_nms(boxes[[0, 2]], torch.tensor([0.9, 0.8]), torch.tensor([0, 0]), 0.5, 100)
    assert keep.tolist() == [0]
