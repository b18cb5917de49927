"""ILSVRC VID devkit AP as FGFA evaluates it (docs/mmtracking_spec.md §6.3), with the slow / medium / fast motion split.

Not what mmtracking reports (that is COCO AP50, see `coco.py`); given for comparison with papers.
Every rule below follows FGFA's `imagenet_vid_eval_motion.py`; `docs/evaluation.md` lists them with the reasons.
Boxes are xyxy in the converter's convention (x2 = xmax of the XML, an inclusive pixel index), so widths are
`x2 - x1 + 1`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dff.evaluation.ap import APResult, all_point_ap, mean_over_classes

DEFAULT_IOU = 0.5
PIXEL_TOLERANCE = 10.0

#: FGFA's motion ranges; both ends are inclusive, so a motion IoU of exactly 0.7 or 0.9 is in two buckets.
MOTION_RANGES: dict[str, tuple[float, float]] = {
    "all": (0.0, 1.0),
    "fast": (0.0, 0.7),
    "medium": (0.7, 0.9),
    "slow": (0.9, 1.0),
}


@dataclass(frozen=True)
class FrameEval:
    """Ground truth and detections of one frame (labels 0-based; boxes xyxy, inclusive pixel indices)."""

    gt_boxes: np.ndarray  # float64 (M, 4)
    gt_labels: np.ndarray  # int64 (M,)
    det_boxes: np.ndarray  # float64 (N, 4)
    det_scores: np.ndarray  # float64 (N,)
    det_labels: np.ndarray  # int64 (N,)
    gt_motion: np.ndarray | None = None  # float64 (M,) motion IoU of each ground-truth box


def gt_thresholds(gt_boxes: np.ndarray) -> np.ndarray:
    """Per-GT IoU threshold `min(0.5, wh / ((w+10)(h+10)))` with +1 widths: (M, 4) -> (M,)."""
    w = gt_boxes[:, 2] - gt_boxes[:, 0] + 1.0
    h = gt_boxes[:, 3] - gt_boxes[:, 1] + 1.0
    return np.minimum(w * h / ((w + PIXEL_TOLERANCE) * (h + PIXEL_TOLERANCE)), DEFAULT_IOU)


def iou_plus1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU with +1 widths (devkit style) of (N, 4) and (M, 4) xyxy boxes -> (N, M); 0 where they do not overlap."""
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1.0
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1.0
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0] + 1.0) * (a[:, 3] - a[:, 1] + 1.0)
    area_b = (b[:, 2] - b[:, 0] + 1.0) * (b[:, 3] - b[:, 1] + 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (area_a[:, None] + area_b[None, :] - inter)
    return np.where((iw > 0) & (ih > 0), iou, 0.0)


@dataclass(frozen=True)
class _Matched:
    """One frame after greedy matching: detections in descending-score order."""

    order: np.ndarray  # (N,) indices into the frame's detections
    gt_index: np.ndarray  # (N,) matched ground truth or -1
    iou: np.ndarray  # (N, M) IoU with every ground truth, any class


def _match(frame: FrameEval) -> _Matched:
    """Each detection, by descending score, takes the unmatched same-class GT of highest IoU >= that GT's threshold."""
    order = np.argsort(-frame.det_scores, kind="stable")
    boxes, labels = frame.det_boxes[order], frame.det_labels[order]
    iou = iou_plus1(boxes, frame.gt_boxes)
    eligible = (labels[:, None] == frame.gt_labels[None, :]) & (iou >= gt_thresholds(frame.gt_boxes)[None, :])
    gt_index = np.full(len(order), -1, dtype=np.int64)
    taken = np.zeros(len(frame.gt_boxes), dtype=bool)
    for j in np.flatnonzero(eligible.any(axis=1)):
        candidates = eligible[j] & ~taken
        if candidates.any():
            k = int(np.argmax(np.where(candidates, iou[j], -1.0)))
            gt_index[j] = k
            taken[k] = True
    return _Matched(order, gt_index, iou)


def _tp_fp(frame: FrameEval, m: _Matched, ignored: np.ndarray, empty_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """TP and (possibly fractional) FP weights of one frame's sorted detections, given the ignored GT mask."""
    matched = m.gt_index >= 0
    tp = np.zeros(len(m.order))
    tp[matched] = (~ignored[m.gt_index[matched]]).astype(np.float64)
    fp = np.zeros(len(m.order))
    unmatched = ~matched
    if not unmatched.any():
        return tp, fp
    if len(ignored) == 0:
        fp[unmatched] = empty_weight
        return tp, fp
    iou = m.iou[unmatched]
    best_ignored = np.where(ignored[None, :], iou, -1.0).max(axis=1)
    best_counted = np.where(~ignored[None, :], iou, -1.0).max(axis=1)
    weight = np.where(best_counted > best_ignored, 1.0, 0.0)
    weight[best_counted == best_ignored] = ignored.mean()
    fp[unmatched] = weight
    return tp, fp


def _ap_per_class(
    scores: np.ndarray, labels: np.ndarray, tp: np.ndarray, fp: np.ndarray, npos: np.ndarray
) -> list[float | None]:
    """All-point AP of each class from pooled detections (sorted by descending score, stable)."""
    order = np.argsort(-scores, kind="stable")
    scores, labels, tp, fp = scores[order], labels[order], tp[order], fp[order]
    per_class: list[float | None] = []
    for c, n in enumerate(npos):
        if n <= 0:
            per_class.append(None)
            continue
        sel = labels == c
        ctp, cfp = np.cumsum(tp[sel]), np.cumsum(fp[sel])
        precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
        per_class.append(all_point_ap(ctp / n, precision))
    return per_class


def evaluate_ilsvrc(
    frames: Sequence[FrameEval],
    num_classes: int,
    motion_ranges: dict[str, tuple[float, float]] | None = None,
) -> dict[str, APResult]:
    """AP per motion range (default: only "all", which needs no motion IoU), as FGFA computes it.

    GT whose motion IoU lies outside a range are ignored for that range: they still take part in matching,
    a detection matched to one counts neither TP nor FP, and they do not count as positives. An unmatched
    detection is a full FP if it overlaps a counted GT more than any ignored one, no FP if the reverse, and
    otherwise (a tie, typically no overlap at all) an FP weighted by the frame's fraction of ignored GT, or on a
    frame without GT by the dataset's fraction of GT inside the range.
    """
    motion_ranges = motion_ranges or {"all": MOTION_RANGES["all"]}
    matches = [_match(f) for f in frames]
    scores = np.concatenate([f.det_scores[m.order] for f, m in zip(frames, matches)] + [np.zeros(0)])
    labels = np.concatenate([f.det_labels[m.order] for f, m in zip(frames, matches)] + [np.zeros(0, np.int64)])
    gt_labels = np.concatenate([f.gt_labels for f in frames] + [np.zeros(0, np.int64)])
    results: dict[str, APResult] = {}
    for name, (lo, hi) in motion_ranges.items():
        ignored = [_ignored(f, lo, hi, name) for f in frames]
        all_ignored = np.concatenate(ignored + [np.zeros(0, bool)])
        empty_weight = 1.0 - float(all_ignored.mean()) if len(all_ignored) else 1.0
        weights = [_tp_fp(f, m, ig, empty_weight) for f, m, ig in zip(frames, matches, ignored)]
        tp = np.concatenate([w[0] for w in weights] + [np.zeros(0)])
        fp = np.concatenate([w[1] for w in weights] + [np.zeros(0)])
        npos = np.bincount(gt_labels[~all_ignored], minlength=num_classes)[:num_classes]
        per_class = _ap_per_class(scores, labels, tp, fp, npos)
        results[name] = APResult(mean_over_classes(per_class), tuple(per_class), tuple(int(n) for n in npos))
    return results


def _ignored(frame: FrameEval, lo: float, hi: float, name: str) -> np.ndarray:
    """GT outside [lo, hi] of motion IoU; none when the range covers every possible value."""
    if frame.gt_motion is None:
        if (lo, hi) != MOTION_RANGES["all"]:
            raise ValueError(f"motion range {name!r} needs the motion IoU of every ground-truth box")
        return np.zeros(len(frame.gt_labels), dtype=bool)
    return (frame.gt_motion < lo) | (frame.gt_motion > hi)
