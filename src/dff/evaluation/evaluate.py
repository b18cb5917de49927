"""Evaluate a run's frame records against a COCO-VID dataset under each protocol, and format the table."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np

from dff.data.cocovid import CocoVID
from dff.evaluation.ap import APResult
from dff.evaluation.coco import coco_ap50
from dff.evaluation.ilsvrc import MOTION_RANGES, FrameEval, evaluate_ilsvrc
from dff.evaluation.motion import gt_motion_iou
from dff.io.result import FrameResult

log = logging.getLogger(__name__)

METRICS = ("coco", "ilsvrc", "motion")

#: Column name -> what it is; every number printed or saved carries one of these labels.
PROTOCOLS = {
    "coco_ap50": "COCO box AP@0.5 as mmtracking reports it (pycocotools, 101 recall points, all frames pooled)",
    "ilsvrc_ap50": "ILSVRC VID devkit AP (per-GT IoU threshold min(0.5, wh/((w+10)(h+10))), all-point AP; FGFA)",
    "motion_fast": "ILSVRC devkit AP on fast objects (motion IoU <= 0.7; FGFA protocol, motion IoU from annotations)",
    "motion_medium": "ILSVRC devkit AP on medium objects (0.7 <= motion IoU <= 0.9)",
    "motion_slow": "ILSVRC devkit AP on slow objects (motion IoU >= 0.9)",
}


def parse_metrics(text: str) -> tuple[str, ...]:
    """'coco,ilsvrc' -> ('coco', 'ilsvrc'); raises ValueError naming an unknown one."""
    names = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise ValueError(f"unknown metric(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(METRICS)}")
    return names


def coco_results(results: Iterable[FrameResult], cat_ids: Sequence[int] | None = None) -> list[dict]:
    """The COCO-format results list (what mmdet writes to `results.bbox.json`, and `dff detect --out-coco`, through
    the same `FrameResult.coco_items`); category id `cat_ids[label]`, default label + 1."""
    category_id = None if cat_ids is None else cat_ids.__getitem__
    return [item for r in results for item in r.coco_items(category_id)]


def evaluate(
    dataset: CocoVID, records: Sequence[FrameResult], class_names: Sequence[str], metrics: Sequence[str] = METRICS
) -> dict[str, APResult]:
    """AP50 under each requested protocol: keys of `PROTOCOLS` (motion gives the three motion buckets); `records`
    carry the dataset's image ids."""
    cat_ids = dataset.category_ids(class_names)
    label_of = {c: i for i, c in enumerate(cat_ids)}
    anns = [a for a in dataset.all_annotations() if a["category_id"] in label_of]
    by_image = {r.image_id: r for r in records}
    missing = [im["id"] for im in dataset.images if im["id"] not in by_image]
    if missing:
        log.warning(
            "%d of %d frames have no results; they count as frames without detections",
            len(missing),
            len(dataset.images),
        )
    out: dict[str, APResult] = {}
    if "coco" in metrics:
        gt = [{**a, "category_id": label_of[a["category_id"]] + 1} for a in anns]
        out["coco_ap50"] = coco_ap50(dataset.images, gt, coco_results(records), len(cat_ids))
    if "ilsvrc" in metrics or "motion" in metrics:
        motion = gt_motion_iou(dataset) if "motion" in metrics else None
        frames = [_frame(dataset, im["id"], by_image.get(im["id"]), label_of, motion) for im in dataset.images]
        ranges = {}
        if "ilsvrc" in metrics:
            ranges["ilsvrc_ap50"] = MOTION_RANGES["all"]
        if "motion" in metrics:
            ranges.update({f"motion_{k}": MOTION_RANGES[k] for k in ("fast", "medium", "slow")})
        out.update(evaluate_ilsvrc(frames, len(cat_ids), ranges))
    return out


def _frame(
    dataset: CocoVID,
    image_id: object,
    record: FrameResult | None,
    label_of: dict[int, int],
    motion: dict[object, float] | None,
) -> FrameEval:
    anns = [a for a in dataset.annotations(image_id) if a["category_id"] in label_of]
    gt = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], np.float64).reshape(-1, 4)
    if record is None:  # a frame without results: no detections
        boxes, scores, labels = np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)
    else:
        boxes, scores, labels = record.boxes.astype(np.float64), record.scores.astype(np.float64), record.labels
    return FrameEval(
        gt_boxes=gt,
        gt_labels=np.array([label_of[a["category_id"]] for a in anns], np.int64),
        det_boxes=boxes,
        det_scores=scores,
        det_labels=labels,
        gt_motion=None if motion is None else np.array([motion[a["id"]] for a in anns], np.float64),
    )


def format_table(results: dict[str, APResult], class_names: Sequence[str]) -> str:
    """Per-class and mean AP50 (in %) for each protocol, one column each, with the legend underneath.

    Classes without ground truth under every protocol are left out; "-" marks no ground truth under one.
    """
    cols = list(results)
    width = max(len(n) for n in [*class_names, "mean (classes with GT)"]) + 2
    head = "class".ljust(width) + "".join(c.rjust(15) for c in cols)
    lines = [head, "-" * len(head)]

    def cell(v: float | None) -> str:
        return ("-" if v is None else f"{100 * v:.1f}").rjust(15)

    for i, name in enumerate(class_names):
        if all(results[c].per_class[i] is None for c in cols):
            continue  # no ground truth of this class under any protocol
        lines.append(name.ljust(width) + "".join(cell(results[c].per_class[i]) for c in cols))
    lines.append("-" * len(head))
    lines.append("mean (classes with GT)".ljust(width) + "".join(cell(results[c].mean) for c in cols))
    lines += ["", *(f"{c}: {PROTOCOLS[c]}" for c in cols)]
    return "\n".join(lines)
