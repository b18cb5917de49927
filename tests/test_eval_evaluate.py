"""The protocols on a synthetic ILSVRC-format val set (converted to COCO-VID), with detections made from the GT."""

from __future__ import annotations

import numpy as np
import pytest

from dff.classes import VID_CLASSES
from dff.data.cocovid import CocoVID
from dff.data.convert import convert_dataset
from dff.data.synthetic import make_synthetic
from dff.evaluation.evaluate import coco_results, evaluate, format_table, parse_metrics
from dff.evaluation.motion import gt_motion_iou
from dff.io.result import FrameResult
from tests.conftest import frame_result

MOTION = ("motion_fast", "motion_medium", "motion_slow")


@pytest.fixture(scope="module")
def val_set(tmp_path_factory) -> CocoVID:
    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic(root, videos=0, frames=20, val_videos=3, det_images=0, width=96, height=64, seed=3, progress=False)
    (path,) = convert_dataset(root, parts=("vid_val",), check_images=False, progress=False)
    return CocoVID.load(path)


def records_from_gt(dataset: CocoVID, keep=lambda ann: True) -> list[FrameResult]:
    out = []
    for video, images in dataset.iter_videos():
        for im in images:
            anns = [a for a in dataset.annotations(im["id"]) if keep(a)]
            boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], np.float32)
            out.append(
                frame_result(
                    video["id"],
                    im["id"],
                    im["frame_id"],
                    im["frame_id"] == 0,
                    boxes.reshape(-1, 4),
                    np.linspace(1, 0.5, len(anns)).astype(np.float32),
                    np.array([a["category_id"] - 1 for a in anns], np.int64),
                )
            )
    return out


def test_every_motion_bucket_is_populated(val_set):
    m = np.array(list(gt_motion_iou(val_set).values()))
    assert len(m) == len(val_set.all_annotations())
    assert (m < 0.7).any() and ((m >= 0.7) & (m <= 0.9)).any() and (m > 0.9).any()


def test_perfect_detections_score_one_under_every_protocol(val_set):
    ap = evaluate(val_set, records_from_gt(val_set), VID_CLASSES)
    assert set(ap) == {"coco_ap50", "ilsvrc_ap50", *MOTION}
    for name, result in ap.items():
        assert result.mean == pytest.approx(1.0), name
    assert sum(ap["coco_ap50"].num_gt) == len(val_set.all_annotations())
    assert sum(ap["ilsvrc_ap50"].num_gt) == len(val_set.all_annotations())
    # every GT is in exactly one bucket unless its motion IoU is exactly 0.7 or 0.9
    assert sum(sum(ap[b].num_gt) for b in MOTION) >= len(val_set.all_annotations())
    table = format_table(ap, VID_CLASSES)
    assert "mean (classes with GT)" in table and "100.0" in table and "antelope" not in table


def test_missing_fast_objects(val_set):
    motion = gt_motion_iou(val_set)
    ap = evaluate(val_set, records_from_gt(val_set, keep=lambda a: motion[a["id"]] >= 0.7), VID_CLASSES)
    assert ap["motion_slow"].mean == pytest.approx(1.0)
    assert ap["motion_medium"].mean == pytest.approx(1.0)
    assert all(v in (None, 0.0) for v in ap["motion_fast"].per_class)
    # with precision 1 throughout, all-point AP is the recall of each class
    for c, (value, n) in enumerate(zip(ap["ilsvrc_ap50"].per_class, ap["ilsvrc_ap50"].num_gt)):
        if n:
            found = sum(1 for a in val_set.all_annotations() if a["category_id"] == c + 1 and motion[a["id"]] >= 0.7)
            assert value == pytest.approx(found / n)


def test_metric_subset_and_results_format(val_set):
    records = records_from_gt(val_set)
    assert set(evaluate(val_set, records, VID_CLASSES, parse_metrics("coco"))) == {"coco_ap50"}
    assert set(evaluate(val_set, records, VID_CLASSES, parse_metrics("motion"))) == set(MOTION)
    with pytest.raises(ValueError, match="bogus"):
        parse_metrics("coco,bogus")
    res = coco_results(records[:1], val_set.category_ids(VID_CLASSES))
    first = val_set.annotations(records[0].image_id)[0]
    assert res[0]["image_id"] == records[0].image_id
    assert res[0]["bbox"] == pytest.approx(first["bbox"]) and res[0]["category_id"] == first["category_id"]
