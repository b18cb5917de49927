"""Hand-computed cases for COCO AP50 (pycocotools, 101 points) and ILSVRC devkit AP (all points, motion buckets)."""

from __future__ import annotations

import numpy as np
import pytest

from dff.evaluation.ap import all_point_ap
from dff.evaluation.coco import coco_ap50
from dff.evaluation.ilsvrc import MOTION_RANGES, FrameEval, evaluate_ilsvrc, gt_thresholds, iou_plus1
from tests.conftest import frame_result

GT_BOX = [10.0, 10.0, 40.0, 30.0]  # xywh
FAR = [200.0, 200.0, 240.0, 240.0]  # xyxy, overlaps nothing


def xyxy(b: list[float]) -> list[float]:
    return [b[0], b[1], b[0] + b[2], b[1] + b[3]]


def run_both(frames: list[dict], num_classes: int = 3):
    """frames: [{"gt": [(xywh, label, motion)], "dets": [(xyxy, score, label)]}] -> (coco APResult, ilsvrc dict)."""
    images, anns, results, evals = [], [], [], []
    for i, f in enumerate(frames, start=1):
        images.append({"id": i, "height": 300, "width": 400})
        for box, label, _ in f["gt"]:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": label + 1,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": False,
                }
            )
        det_boxes = np.array([d[0] for d in f["dets"]], np.float32).reshape(-1, 4)
        scores = np.array([d[1] for d in f["dets"]], np.float32)
        labels = np.array([d[2] for d in f["dets"]], np.int64)
        results += frame_result(None, i, 0, True, det_boxes, scores, labels).coco_items()
        evals.append(
            FrameEval(
                gt_boxes=np.array([xyxy(g[0]) for g in f["gt"]], np.float64).reshape(-1, 4),
                gt_labels=np.array([g[1] for g in f["gt"]], np.int64),
                det_boxes=det_boxes.astype(np.float64),
                det_scores=scores.astype(np.float64),
                det_labels=labels,
                gt_motion=np.array([g[2] for g in f["gt"]], np.float64),
            )
        )
    return coco_ap50(images, anns, results, num_classes), evaluate_ilsvrc(evals, num_classes, MOTION_RANGES)


def test_all_point_ap_by_hand():
    # recall steps 0 -> .5 at precision 1, .5 -> 1 at envelope max(.5, 2/3) = 2/3
    assert all_point_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert all_point_ap(np.zeros(0), np.zeros(0)) == 0.0


def test_perfect_detections_give_ap_one():
    frames = [
        {
            "gt": [(GT_BOX, 0, 0.95), ([100.0, 50.0, 30.0, 60.0], 2, 0.5)],
            "dets": [(xyxy(GT_BOX), 0.9, 0), (xyxy([100.0, 50.0, 30.0, 60.0]), 0.8, 2)],
        },
        {"gt": [([5.0, 5.0, 20.0, 20.0], 0, 0.8)], "dets": [(xyxy([5.0, 5.0, 20.0, 20.0]), 0.7, 0)]},
    ]
    coco, ilsvrc = run_both(frames)
    assert coco.mean == pytest.approx(1.0)
    assert coco.per_class == (pytest.approx(1.0), None, pytest.approx(1.0))
    assert coco.num_gt == (2, 0, 1)
    for name in ("all", "fast", "medium", "slow"):
        assert ilsvrc[name].mean == pytest.approx(1.0)
    assert ilsvrc["slow"].num_gt == (1, 0, 0)
    assert ilsvrc["slow"].per_class == (pytest.approx(1.0), None, None)


def test_known_tp_fp_sequence():
    # one class, 4 GT in 4 frames; by score: TP, FP, TP, FP, TP; the last GT is missed
    # precision 1, 1/2, 2/3, 2/4, 3/5 at recall .25, .25, .5, .5, .75
    frames = [
        {"gt": [(GT_BOX, 0, 1.0)], "dets": [(xyxy(GT_BOX), 0.9, 0), (FAR, 0.8, 0)]},
        {"gt": [(GT_BOX, 0, 1.0)], "dets": [(xyxy(GT_BOX), 0.7, 0), (FAR, 0.6, 0)]},
        {"gt": [(GT_BOX, 0, 1.0)], "dets": [(xyxy(GT_BOX), 0.5, 0)]},
        {"gt": [(GT_BOX, 0, 1.0)], "dets": []},
    ]
    coco, ilsvrc = run_both(frames, num_classes=1)
    # all points: .25 * 1 + .25 * 2/3 + .25 * 3/5
    assert ilsvrc["all"].mean == pytest.approx(0.25 + 0.25 * 2 / 3 + 0.25 * 0.6)
    # 101 points: r in [0, .25] (26 points) -> 1, (.25, .5] (25) -> 2/3, (.5, .75] (25) -> 3/5, above (25) -> 0
    assert coco.mean == pytest.approx((26 + 25 * 2 / 3 + 25 * 0.6) / 101)
    assert coco.per_class[0] == pytest.approx(coco.mean)


def test_duplicate_detection_is_false_positive_in_both():
    frames = [{"gt": [(GT_BOX, 0, 1.0)], "dets": [(xyxy(GT_BOX), 0.5, 0), (xyxy(GT_BOX), 0.9, 0)]}]
    coco, ilsvrc = run_both(frames, num_classes=1)
    assert coco.mean == pytest.approx(1.0)  # the higher score is the TP: precision 1 at recall 1
    frames[0]["dets"].append((FAR, 0.95, 0))  # now FP, TP, FP: precision 1/2 at recall 1
    coco, ilsvrc = run_both(frames, num_classes=1)
    assert coco.mean == pytest.approx(0.5)
    assert ilsvrc["all"].mean == pytest.approx(0.5)


def test_wrong_class_does_not_match():
    frames = [{"gt": [(GT_BOX, 0, 1.0)], "dets": [(xyxy(GT_BOX), 0.9, 1)]}]
    coco, ilsvrc = run_both(frames, num_classes=2)
    assert coco.per_class == (0.0, None) and coco.mean == 0.0
    assert ilsvrc["all"].per_class == (0.0, None)


def test_small_object_matches_under_ilsvrc_rule_only():
    gt = [10.0, 10.0, 7.0, 7.0]  # 8x8 pixels with +1 widths: threshold 64 / 18^2 = 0.1975
    det = [13.0, 13.0, 20.0, 20.0]  # devkit IoU 25 / 103 = 0.243; COCO IoU 16 / 82 = 0.195
    assert gt_thresholds(np.array([xyxy(gt)]))[0] == pytest.approx(64 / 324)
    assert iou_plus1(np.array([det]), np.array([xyxy(gt)]))[0, 0] == pytest.approx(25 / 103)
    coco, ilsvrc = run_both([{"gt": [(gt, 0, 1.0)], "dets": [(det, 0.9, 0)]}], num_classes=1)
    assert coco.mean == 0.0
    assert ilsvrc["all"].mean == pytest.approx(1.0)


def test_large_object_threshold_is_half():
    assert gt_thresholds(np.array([[0.0, 0.0, 99.0, 99.0]]))[0] == 0.5  # 100x100: 1e4 / 110^2 = .83 -> capped


def motion_frames() -> list[dict]:
    slow, fast = ([10.0, 10.0, 40.0, 30.0], 0, 0.95), ([200.0, 100.0, 50.0, 50.0], 0, 0.5)
    return [
        {
            "gt": [slow, fast],
            "dets": [
                (FAR[:2] + [FAR[2] + 100, FAR[3] + 50], 0.95, 0),  # overlaps neither GT: a tie at IoU 0
                (xyxy(slow[0]), 0.9, 0),
                (xyxy(fast[0]), 0.85, 0),
            ],
        }
    ]


def test_motion_buckets_fractional_false_positive():
    _, ap = run_both(motion_frames(), num_classes=1)
    # all: FP(1), TP, TP with 2 GT -> precision 0, 1/2, 2/3 at recall 0, .5, 1 -> AP 2/3
    assert ap["all"].mean == pytest.approx(2 / 3)
    # slow: the fast GT is ignored; the unmatched det weighs as 1/2 FP (half the frame's GT are ignored),
    # the det on the fast GT counts nothing -> precision 1/1.5 at recall 1
    assert ap["slow"].mean == pytest.approx(1 / 1.5)
    assert ap["slow"].num_gt == (1,)
    assert ap["fast"].mean == pytest.approx(1 / 1.5)
    assert ap["medium"].per_class == (None,) and ap["medium"].num_gt == (0,)


def test_motion_unmatched_detection_weighted_by_overlap():
    frames = motion_frames()
    slow_box, fast_box = frames[0]["gt"][0][0], frames[0]["gt"][1][0]
    # replace the tie FP with one overlapping the fast GT a little (IoU below its threshold)
    frames[0]["dets"][0] = ([fast_box[0] + 40, fast_box[1] + 40, fast_box[0] + 90, fast_box[1] + 90], 0.95, 0)
    _, ap = run_both(frames, num_classes=1)
    assert ap["slow"].mean == pytest.approx(1.0)  # overlaps only the ignored GT -> no FP
    assert ap["fast"].mean == pytest.approx(0.5)  # overlaps the counted GT -> full FP
    # a second detection on the (ignored, already matched) slow GT counts nothing in "fast"
    frames[0]["dets"].append((xyxy(slow_box), 0.99, 0))
    _, ap = run_both(frames, num_classes=1)
    assert ap["fast"].mean == pytest.approx(0.5)


def test_motion_empty_frame_weight_is_share_of_gt_in_range():
    frames = motion_frames()[:1]
    frames[0]["dets"] = [(xyxy(frames[0]["gt"][0][0]), 0.9, 0)]  # TP on the slow GT
    frames.append({"gt": [], "dets": [(FAR, 0.99, 0)]})  # an FP on a frame without GT
    frames.append({"gt": [([5.0, 5.0, 30.0, 30.0], 0, 0.97)], "dets": []})  # a missed slow GT
    _, ap = run_both(frames, num_classes=1)
    # 2 of the 3 GT are slow: the empty-frame FP weighs 2/3; precision 0 then 1/(1+2/3) at recall 1/2
    assert ap["slow"].mean == pytest.approx(0.5 * 1 / (1 + 2 / 3))
    assert ap["all"].mean == pytest.approx(0.5 / 3)  # 3 GT counted, FP weight 1: precision 1/2 at recall 1/3


def test_no_detections_and_no_ground_truth():
    coco, ilsvrc = run_both([{"gt": [(GT_BOX, 1, 1.0)], "dets": []}], num_classes=2)
    assert coco.per_class == (None, 0.0) and coco.mean == 0.0
    assert ilsvrc["all"].per_class == (None, 0.0)
    coco, ilsvrc = run_both([{"gt": [], "dets": [(FAR, 0.5, 0)]}], num_classes=2)
    assert coco.per_class == (None, None) and ilsvrc["all"].per_class == (None, None)


def test_coco_bbox_conversion_matches_mmdet():
    r = frame_result(None, 7, 0, True, np.array([[1.5, 2.25, 11.5, 4.25]], np.float32), [0.5], [29])
    assert r.coco_items() == [{"image_id": 7, "bbox": [1.5, 2.25, 10.0, 2.0], "score": 0.5, "category_id": 30}]
    assert r.coco_items(lambda c: 100 + c)[0]["category_id"] == 129
