"""Tracking metrics: a small case computed by hand, classes kept apart, untracked boxes left out, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("trackeval", reason="the 'track' extra is not installed")

from dff.data.cocovid import CocoVID  # noqa: E402
from dff.errors import DatasetError, InputError  # noqa: E402
from dff.tracking.metrics import PROTOCOLS, FrameTracks, evaluate_tracking, format_tracking  # noqa: E402

A, B, FAR = [10, 10, 50, 50], [100, 10, 140, 50], [300, 200, 340, 240]  # disjoint boxes, x1 y1 x2 y2
CLASSES = ["airplane", "bus"]


def coco(objects_per_frame, frames=4):
    """One video; objects_per_frame[t] = [(category_id, instance_id, xyxy), ...]."""
    images = [
        dict(id=t + 1, file_name=f"v/{t:06d}.JPEG", height=300, width=400, video_id=1, frame_id=t)
        for t in range(frames)
    ]
    anns = []
    for t, objs in enumerate(objects_per_frame):
        for cat, inst, (x1, y1, x2, y2) in objs:
            ann = dict(id=len(anns) + 1, image_id=t + 1, category_id=cat, bbox=[x1, y1, x2 - x1, y2 - y1])
            if inst is not None:
                ann["instance_id"] = inst
            anns.append(ann)
    cats = [dict(id=1, name="airplane"), dict(id=2, name="bus")]
    return CocoVID(dict(categories=cats, videos=[dict(id=1, name="v")], images=images, annotations=anns))


def tracks(per_frame):
    """per_frame[t] = [(label, track_id, xyxy), ...] -> {image_id: FrameTracks}."""
    out = {}
    for t, dets in enumerate(per_frame):
        out[t + 1] = FrameTracks(
            np.array([d[2] for d in dets], dtype=np.float64).reshape(-1, 4),
            np.array([d[0] for d in dets], dtype=np.int64),
            np.array([d[1] for d in dets], dtype=np.int64),
        )
    return out


# Airplane: instance 1 on A in all four frames, instance 2 on B in frames 0-1. Predicted: track 10 on A (frames
# 0-1), then track 11 on A (frames 2-3, an id switch); track 12 on B in frame 0 only (a miss in frame 1); track 13
# on FAR in frame 3 (a false positive). Bus: instance 3 on FAR in all frames, tracked perfectly as track 20.
GT = [
    [(1, 1, A), (1, 2, B), (2, 3, FAR)],
    [(1, 1, A), (1, 2, B), (2, 3, FAR)],
    [(1, 1, A), (2, 3, FAR)],
    [(1, 1, A), (2, 3, FAR)],
]
PRED = [
    [(0, 10, A), (0, 12, B), (1, 20, FAR)],
    [(0, 10, A), (1, 20, FAR)],
    [(0, 11, A), (1, 20, FAR)],
    [(0, 11, A), (0, 13, FAR), (1, 20, FAR)],
]


def test_hand_computed_case():
    m = evaluate_tracking(coco(GT), tracks(PRED), CLASSES)
    air, bus = m.per_class["airplane"], m.per_class["bus"]
    # Airplane: GT 6, TP 5, FN 1, FP 1, IDSW 1 -> MOTA 1 - 3/6. IDF1: best one-to-one ids (1-10 or 1-11: 2, 2-12:
    # 1) IDTP 3 of 6 GT and 6 predicted -> 0.5. HOTA (IoU exactly 1 or 0, so the same at every alpha): DetA 5/7;
    # every TP's association is 0.5 (1-10: 2/(2+2+0), 1-11: 2/4, 2-12: 1/2) -> sqrt(5/7 * 0.5).
    assert (air.gt_dets, air.pred_dets, air.id_switches) == (6, 6, 1)
    assert air.mota == pytest.approx(0.5)
    assert air.idf1 == pytest.approx(0.5) and air.idp == pytest.approx(0.5) and air.idr == pytest.approx(0.5)
    assert air.deta == pytest.approx(5 / 7) and air.assa == pytest.approx(0.5)
    assert air.hota == pytest.approx(math.sqrt(5 / 7 * 0.5))
    assert (bus.hota, bus.mota, bus.idf1, bus.id_switches) == (pytest.approx(1), pytest.approx(1), pytest.approx(1), 0)
    # Pooled: GT 10, TP 9, FN 1, FP 1, IDSW 1; IDTP 7; AssA weighted by TP (5 x 0.5 + 4 x 1) / 9.
    assert m.overall.mota == pytest.approx(0.7) and m.overall.idf1 == pytest.approx(0.7)
    assert m.overall.hota == pytest.approx(math.sqrt(9 / 11 * 6.5 / 9))
    assert m.class_mean.mota == pytest.approx(0.75) and m.class_mean.idf1 == pytest.approx(0.75)
    assert m.class_mean.hota == pytest.approx((math.sqrt(5 / 7 * 0.5) + 1) / 2)
    table = format_tracking(m)
    assert "airplane" in table and "class mean" in table and all(k in table for k in PROTOCOLS)


def test_classes_are_matched_apart_and_untracked_boxes_left_out():
    # The bus track on FAR labelled airplane: a bus miss and an airplane false positive in every frame.
    wrong = [[(0, 1, A)] + [(0, 20, FAR)] for _ in range(4)]
    gt = [[(1, 1, A), (2, 3, FAR)] for _ in range(4)]
    m = evaluate_tracking(coco(gt), tracks(wrong), CLASSES)
    assert m.per_class["bus"].mota == pytest.approx(0.0) and m.per_class["bus"].pred_dets == 0
    assert m.per_class["airplane"].mota == pytest.approx(1 - 4 / 4)  # 4 TP, 4 FP
    # Track id -1 counts as no prediction: the same as leaving the box out.
    untracked = [[(0, 1, A), (1, -1, FAR)] for _ in range(4)]
    m = evaluate_tracking(coco(gt), tracks(untracked), CLASSES)
    assert m.per_class["bus"].pred_dets == 0 and m.per_class["bus"].idf1 == pytest.approx(0.0)
    assert m.per_class["airplane"].idf1 == pytest.approx(1.0)


def test_frames_without_results_and_an_empty_set():
    gt = [[(1, 1, A)] for _ in range(4)]
    m = evaluate_tracking(coco(gt), {1: tracks([[(0, 5, A)]])[1]}, CLASSES)  # only frame 0 has results
    assert m.overall.gt_dets == 4 and m.overall.mota == pytest.approx(0.25)
    m = evaluate_tracking(coco([[] for _ in range(4)]), {}, CLASSES)
    assert m.per_class == {} and m.class_mean is None and m.overall.gt_dets == 0


def test_bad_input():
    with pytest.raises(DatasetError, match="has no instance_id"):
        evaluate_tracking(coco([[(1, None, A)], [], [], []]), {}, CLASSES)
    gt = [[(1, 1, A)] for _ in range(4)]
    with pytest.raises(InputError, match="track id 7 twice"):
        evaluate_tracking(coco(gt), tracks([[(0, 7, A), (0, 7, B)], [], [], []]), CLASSES)
    with pytest.raises(InputError, match="unknown image id 99"):
        evaluate_tracking(coco(gt), {99: tracks([[]])[1]}, CLASSES)
    with pytest.raises(DatasetError, match="no category named"):
        evaluate_tracking(coco(gt), {}, ["airplane", "zebra"])
