"""Tracking metrics against a COCO-VID set's ``instance_id``s: HOTA, MOTA and IDF1 through TrackEval.

The metric code is TrackEval's own (``trackeval`` on PyPI, MIT, the maintained fork that runs on numpy 2; optional
extra ``pip install -e ".[track]"``); this module only lays the data out as TrackEval's MOT-style evaluation does:
each class of each video is one sequence, whose ground-truth ids are the annotations' ``instance_id``s and whose
tracker ids are the predicted track ids, both renumbered 0..n-1; similarity is TrackEval's box IoU (no +1).
Predictions with track id -1 (untracked) are left out. Per class the videos are combined with TrackEval's
``combine_sequences``; ``overall`` pools the classes (``combine_classes_det_averaged``) and ``class_mean`` averages
them (``combine_classes_class_averaged``, over classes with any ground truth or prediction).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dff.data.cocovid import CocoVID
from dff.errors import DatasetError, DFFError, InputError

PROTOCOLS: dict[str, str] = {
    "HOTA": "HOTA (Luiten et al. 2020; TrackEval): mean over IoU thresholds 0.05..0.95 of sqrt(DetA * AssA)",
    "MOTA": "CLEAR MOTA (Bernardin & Stiefelhagen 2008; TrackEval): 1 - (FN + FP + IDSW) / GT at IoU >= 0.5",
    "IDF1": "identity F1 (Ristani et al. 2016; TrackEval): one-to-one global id matching at IoU >= 0.5",
}
"""What each reported metric means; every class of every video is one sequence, ids from COCO-VID instance_id."""

MATCH_IOU = 0.5
"""The IoU at which CLEAR (MOTA) and Identity (IDF1) count a match; HOTA sweeps its own thresholds."""


def require_trackeval() -> Any:
    """The ``trackeval`` module; a one-line DFFError naming the extra when it is missing."""
    try:
        import trackeval
    except ImportError as e:
        raise DFFError(
            f"tracking metrics need the optional 'track' extra ({e.name or e} is not installed): "
            "pip install 'deep-feature-flow[track]'"
        ) from None
    return trackeval


@dataclass(frozen=True)
class TrackingScores:
    """TrackEval's headline numbers of one class (or of all), as fractions in [0, 1] (counts as integers)."""

    hota: float
    deta: float
    assa: float
    mota: float
    motp: float
    idf1: float
    idp: float
    idr: float
    id_switches: int
    gt_dets: int
    pred_dets: int


@dataclass(frozen=True)
class TrackingMetrics:
    """HOTA / MOTA / IDF1 overall (classes pooled), as a class mean, and per class name; see :data:`PROTOCOLS`."""

    overall: TrackingScores
    class_mean: TrackingScores | None  # None when no class has any ground truth or prediction
    per_class: dict[str, TrackingScores]


@dataclass(frozen=True)
class FrameTracks:
    """One frame's tracked detections: boxes (N, 4) x1y1x2y2 in original pixels, 0-based labels, track ids."""

    boxes: np.ndarray
    labels: np.ndarray
    track_ids: np.ndarray


def _scores(hota: dict, clear: dict, identity: dict) -> TrackingScores:
    return TrackingScores(
        hota=float(np.mean(hota["HOTA"])),
        deta=float(np.mean(hota["DetA"])),
        assa=float(np.mean(hota["AssA"])),
        mota=float(clear["MOTA"]),
        motp=float(clear["MOTP"]),
        idf1=float(identity["IDF1"]),
        idp=float(identity["IDP"]),
        idr=float(identity["IDR"]),
        id_switches=int(clear["IDSW"]),
        gt_dets=int(clear["CLR_TP"] + clear["CLR_FN"]),
        pred_dets=int(clear["CLR_TP"] + clear["CLR_FP"]),
    )


def _renumber(ids_per_frame: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Map the ids of a sequence to 0..n-1 (TrackEval's preprocessing); returns the new ids and n."""
    unique = np.unique(np.concatenate(ids_per_frame)) if ids_per_frame else np.zeros(0, dtype=np.int64)
    return [np.searchsorted(unique, ids).astype(int) for ids in ids_per_frame], len(unique)


def _sequence(gt: list[tuple[np.ndarray, np.ndarray]], pred: list[tuple[np.ndarray, np.ndarray]], iou) -> dict:
    """TrackEval's per-sequence data dict from per-frame (ids, boxes xyxy) of ground truth and predictions."""
    gt_ids, num_gt_ids = _renumber([ids for ids, _ in gt])
    tracker_ids, num_tracker_ids = _renumber([ids for ids, _ in pred])
    return {
        "num_timesteps": len(gt),
        "num_gt_ids": num_gt_ids,
        "num_tracker_ids": num_tracker_ids,
        "num_gt_dets": sum(len(ids) for ids in gt_ids),
        "num_tracker_dets": sum(len(ids) for ids in tracker_ids),
        "gt_ids": gt_ids,
        "tracker_ids": tracker_ids,
        "similarity_scores": [iou(g, p, box_format="x0y0x1y1") for (_, g), (_, p) in zip(gt, pred)],
    }


def _frame_tracks(dataset: CocoVID, image_id: object, tracks: FrameTracks | None) -> FrameTracks:
    if tracks is None:
        return FrameTracks(np.zeros((0, 4)), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    boxes = np.asarray(tracks.boxes, dtype=np.float64).reshape(-1, 4)
    labels, ids = np.asarray(tracks.labels, dtype=np.int64), np.asarray(tracks.track_ids, dtype=np.int64)
    if labels.shape != (len(boxes),) or ids.shape != (len(boxes),):
        raise InputError(
            f"{dataset.path}: results of image {image_id!r} have {len(boxes)} boxes, labels {labels.shape}, "
            f"track ids {ids.shape}"
        )
    return FrameTracks(boxes, labels, ids)


def evaluate_tracking(
    dataset: CocoVID, tracks: Mapping[object, FrameTracks], class_names: Sequence[str]
) -> TrackingMetrics:
    """HOTA, MOTA and IDF1 of ``tracks`` (image id -> :class:`FrameTracks`, labels indexing ``class_names``).

    Ground truth: the dataset's annotations of the model's classes (matched by name), identities from their
    ``instance_id``. A frame without results counts as a frame without detections.
    """

    trackeval = require_trackeval()
    if not dataset.is_video:
        raise DatasetError(f"{dataset.path}: tracking metrics need a COCO-VID file with videos")
    image_ids = {im["id"] for im in dataset.images}
    unknown = [k for k in tracks if k not in image_ids]
    if unknown:
        raise InputError(f"{dataset.path}: tracking results for unknown image id {unknown[0]!r}")
    cat_ids = dataset.category_ids(class_names)
    label_of = {c: i for i, c in enumerate(cat_ids)}
    num_classes = len(class_names)
    config = {"THRESHOLD": MATCH_IOU, "PRINT_CONFIG": False}
    hota_m, clear_m, id_m = (
        trackeval.metrics.HOTA(),
        trackeval.metrics.CLEAR(dict(config)),
        trackeval.metrics.Identity(dict(config)),
    )
    iou = trackeval.datasets._base_dataset._BaseDataset._calculate_box_ious
    per_class_videos: dict[int, list[tuple[dict, dict, dict]]] = defaultdict(list)
    for _, frames in dataset.iter_videos():
        gt = [[([], []) for _ in frames] for _ in range(num_classes)]
        pred: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(num_classes)]
        for t, image in enumerate(frames):
            for ann in dataset.annotations(image["id"]):
                label = label_of.get(ann["category_id"])
                if label is None:
                    continue
                if "instance_id" not in ann:
                    raise DatasetError(
                        f"{dataset.path}: annotation {ann['id']!r} has no instance_id (tracking metrics need one)"
                    )
                x, y, w, h = ann["bbox"]
                gt[label][t][0].append(ann["instance_id"])
                gt[label][t][1].append([x, y, x + w, y + h])
            ft = _frame_tracks(dataset, image["id"], tracks.get(image["id"]))
            tracked = ft.track_ids >= 0
            for label in range(num_classes):
                sel = tracked & (ft.labels == label)
                ids = ft.track_ids[sel]
                if len(np.unique(ids)) != len(ids):
                    raise InputError(
                        f"{dataset.path}: image {image['id']!r} has track id {ids[0]} twice for class "
                        f"{class_names[label]!r} (one id per object per frame)"
                    )
                pred[label].append((ids, ft.boxes[sel]))
        for label in range(num_classes):
            g = [(np.array(ids, dtype=np.int64), np.array(b, dtype=np.float64).reshape(-1, 4)) for ids, b in gt[label]]
            if not any(len(ids) for ids, _ in g) and not any(len(ids) for ids, _ in pred[label]):
                continue
            data = _sequence(g, pred[label], iou)
            per_class_videos[label].append(
                (hota_m.eval_sequence(data), clear_m.eval_sequence(data), id_m.eval_sequence(data))
            )
    per_class_raw = {}
    for label, runs in sorted(per_class_videos.items()):
        per_class_raw[class_names[label]] = tuple(
            metric.combine_sequences({i: run[k] for i, run in enumerate(runs)})
            for k, metric in enumerate((hota_m, clear_m, id_m))
        )
    metrics = (hota_m, clear_m, id_m)
    if per_class_raw:
        pooled = [
            m.combine_classes_det_averaged({c: r[k] for c, r in per_class_raw.items()}) for k, m in enumerate(metrics)
        ]
        mean = [
            m.combine_classes_class_averaged({c: r[k] for c, r in per_class_raw.items()}, ignore_empty_classes=True)
            for k, m in enumerate(metrics)
        ]
        return TrackingMetrics(_scores(*pooled), _scores(*mean), {c: _scores(*r) for c, r in per_class_raw.items()})
    empty = _sequence([], [], iou)
    nothing = [m.eval_sequence(empty) for m in metrics]
    return TrackingMetrics(_scores(*nothing), None, {})


def format_tracking(metrics: TrackingMetrics) -> str:
    """A plain-text table (percent) of overall, class mean and per-class HOTA / MOTA / IDF1, then the protocols."""
    rows = [("overall", metrics.overall)]
    if metrics.class_mean is not None:
        rows.append(("class mean", metrics.class_mean))
    rows += sorted(metrics.per_class.items())
    width = max(len(name) for name, _ in rows)
    lines = [f"{'':<{width}}  {'HOTA':>6} {'MOTA':>6} {'IDF1':>6} {'IDSW':>5} {'GT':>6}"]
    for name, s in rows:
        lines.append(
            f"{name:<{width}}  {100 * s.hota:6.1f} {100 * s.mota:6.1f} {100 * s.idf1:6.1f} "
            f"{s.id_switches:5d} {s.gt_dets:6d}"
        )
    lines += ["", *(f"{k}: {v}" for k, v in PROTOCOLS.items())]
    return "\n".join(lines)
