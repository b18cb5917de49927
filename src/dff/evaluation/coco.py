"""COCO box AP50 exactly as mmtracking 0.14 reports it (docs/mmtracking_spec.md §6.1-6.2), via pycocotools.

All frames are pooled as COCO images; detections become `[x1, y1, x2-x1, y2-y1]` (no +1) with
`category_id = label + 1`; AP50 is `COCOeval.stats[1]` (IoU 0.5, area "all", maxDets 1000, 101 recall points).

Spec pitfalls handled here: 20 (docs/pitfalls.md maps each to its code and tests).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterable, Sequence

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from dff.evaluation.ap import APResult, mean_over_classes

log = logging.getLogger(__name__)

MAX_DETS = (100, 300, 1000)


def _ground_truth(images: Sequence[dict], annotations: Iterable[dict], num_classes: int) -> COCO:
    """A pycocotools COCO object from image and annotation dicts (bbox xywh, category_id 1..num_classes)."""
    anns = []
    for i, a in enumerate(annotations):
        x, y, w, h = a["bbox"]
        anns.append(
            {
                "id": a.get("id", i + 1),
                "image_id": a["image_id"],
                "category_id": a["category_id"],
                "bbox": [x, y, w, h],
                "area": a.get("area", w * h),
                "iscrowd": int(bool(a.get("iscrowd", False))),
            }
        )
    coco = COCO()
    coco.dataset = {
        "images": [{"id": im["id"], "height": im.get("height"), "width": im.get("width")} for im in images],
        "annotations": anns,
        "categories": [{"id": c} for c in range(1, num_classes + 1)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_ap50(
    images: Sequence[dict], annotations: Iterable[dict], results: Sequence[dict], num_classes: int
) -> APResult:
    """Box AP at IoU 0.5 over all `images`, overall (= mmdet `bbox_mAP_50`) and per class.

    An empty result list gives AP 0 for every class that has ground truth (mmdet would print no metric).
    """
    gt = _ground_truth(images, annotations, num_classes)
    num_gt = tuple(len(gt.getAnnIds(catIds=[c], iscrowd=False)) for c in range(1, num_classes + 1))
    if not results:
        per_class = [0.0 if n else None for n in num_gt]
        return APResult(mean_over_classes(per_class), tuple(per_class), num_gt)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        dt = gt.loadRes(list(results))
        ev = COCOeval(gt, dt, "bbox")
        ev.params.catIds = list(range(1, num_classes + 1))
        ev.params.imgIds = [im["id"] for im in images]
        ev.params.maxDets = list(MAX_DETS)
        ev.evaluate()
        ev.accumulate()
    log.debug("%s", printed.getvalue())
    precision = ev.eval["precision"][0, :, :, 0, -1]  # (recall thresholds, classes) at IoU 0.5, area all, 1000 dets
    per_class = [float(p.mean()) if (p > -1).all() else None for p in precision.T]
    valid = precision[precision > -1]  # what COCOeval.stats[1] averages
    return APResult(float(valid.mean()) if valid.size else None, tuple(per_class), num_gt)
