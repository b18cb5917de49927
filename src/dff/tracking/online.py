"""Online track ids for a video's detections, frame by frame, through the ``trackers`` library (Apache-2.0).

``trackers`` (Roboflow) implements ByteTrack, SORT and OC-SORT on supervision's ``sv.Detections``; both come with
the optional extra ``pip install -e ".[track]"``. Its trackers match boxes of any class with each other, so
:class:`OnlineTracker` keeps one library tracker per class and maps each class's own ids to ids unique in the
video (1, 2, ... in the order tracks are confirmed). Every detection gets an id: ``-1`` when it belongs to no
confirmed track: a low-score box matched to nothing, a track younger than ``minimum_consecutive_frames``, and
always the first box of a new track (the library gives a track its id on its first match, in its second frame).
The ids are online: a detection's id is never revised later.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np

from dff.errors import DFFError, InputError

TRACKERS: tuple[str, ...] = ("bytetrack", "sort", "ocsort")
"""The ``trackers`` library's trackers that :class:`TrackerConfig` can name."""

UNTRACKED = -1
"""The track id of a detection that belongs to no confirmed track."""

_CLASSES = {"bytetrack": "ByteTrackTracker", "sort": "SORTTracker", "ocsort": "OCSORTTracker"}
_ACCEPTS = {
    "bytetrack": {"track_activation_threshold", "high_conf_det_threshold"},
    "sort": {"track_activation_threshold"},
    "ocsort": {"high_conf_det_threshold"},
}


def require_track_extra() -> tuple[Any, Any]:
    """The ``trackers`` and ``supervision`` modules; a one-line DFFError naming the extra when either is missing."""
    try:
        import supervision
        import trackers
    except ImportError as e:
        raise DFFError(
            f"tracking needs the optional 'track' extra ({e.name or e} is not installed): "
            "pip install 'deep-feature-flow[track]'"
        ) from None
    return trackers, supervision


@dataclass(frozen=True)
class TrackerConfig:
    """Which tracker, and its settings; a field left ``None`` keeps the ``trackers`` library's default for it.

    ``frame_rate`` scales ``lost_track_buffer`` (frames at 30 fps that a lost track is kept for re-association).
    ``track_activation_threshold`` (ByteTrack, SORT): lowest score that starts a track; ``high_conf_det_threshold``
    (ByteTrack, OC-SORT): the split between the first (high-score) and second association stages.
    """

    tracker: Literal["bytetrack", "sort", "ocsort"] = "bytetrack"
    frame_rate: float = 30.0
    lost_track_buffer: int = 30
    minimum_consecutive_frames: int | None = None
    minimum_iou_threshold: float | None = None
    track_activation_threshold: float | None = None
    high_conf_det_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.tracker not in TRACKERS:
            raise InputError(f"unknown tracker {self.tracker!r}; choose from {', '.join(TRACKERS)}")
        for name in ("track_activation_threshold", "high_conf_det_threshold"):
            if getattr(self, name) is not None and name not in _ACCEPTS[self.tracker]:
                raise InputError(f"tracker {self.tracker!r} has no setting {name}")
        if self.frame_rate <= 0 or self.lost_track_buffer < 0:
            raise InputError(
                f"tracker: frame_rate must be > 0 and lost_track_buffer >= 0 "
                f"(got {self.frame_rate}, {self.lost_track_buffer})"
            )

    def library_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the library tracker's constructor (the fields that are set)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "tracker"}
        return {k: v for k, v in fields.items() if v is not None}


class OnlineTracker:
    """Track ids for one video's detections, fed frame by frame in order; classes are tracked apart.

    ``update(boxes (N, 4) x1y1x2y2, scores (N,), labels (N,))`` returns (N,) int64 ids in the input order, ids
    stable across frames and unique in the video over all classes, :data:`UNTRACKED` (-1) for a detection in no
    confirmed track. Call :meth:`reset` (or make a new one) before the next video.
    """

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._trackers_module, self._sv = require_track_extra()
        self._per_class: dict[int, Any] = {}
        self._ids: dict[tuple[int, int], int] = {}

    def reset(self) -> None:
        """Forget every track (a new video starts)."""
        self._per_class.clear()
        self._ids.clear()

    def _tracker(self, label: int) -> Any:
        if label not in self._per_class:
            cls = getattr(self._trackers_module, _CLASSES[self.config.tracker])
            self._per_class[label] = cls(**self.config.library_kwargs())
        return self._per_class[label]

    def update(self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """One frame: (N,) int64 track ids of its detections, in the input order."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.int64)
        if scores.shape != (len(boxes),) or labels.shape != (len(boxes),):
            raise InputError(
                f"tracker: boxes {boxes.shape}, scores {scores.shape} and labels {labels.shape} do not match"
            )
        ids = np.full(len(boxes), UNTRACKED, dtype=np.int64)
        # Every class seen so far steps once per frame (with no boxes if it has none), so lost tracks age.
        for label in sorted(set(self._per_class) | {int(v) for v in labels}):
            index = np.flatnonzero(labels == label)
            detections = self._sv.Detections(
                xyxy=boxes[index].reshape(-1, 4),
                confidence=scores[index],
                class_id=labels[index],
                data={"index": index},
            )
            result = self._tracker(label).update(detections)
            if len(result) == 0:
                continue
            for i, local in zip(result.data["index"], result.tracker_id):
                if local >= 0:
                    ids[i] = self._ids.setdefault((label, int(local)), len(self._ids) + 1)
        return ids


R = TypeVar("R")


def track(results: Iterable[R], config: TrackerConfig | None = None) -> Iterator[R]:
    """One video's per-frame results (dataclasses with ``boxes``, ``scores``, ``labels``, ``track_ids``, e.g.
    :class:`dff.FrameResult` from ``model.predict``) in frame order, each yielded as soon as it comes in with its
    ``track_ids`` set by one :class:`OnlineTracker` for the whole video."""
    tracker = OnlineTracker(config)
    for r in results:
        yield dataclasses.replace(r, track_ids=tracker.update(r.boxes, r.scores, r.labels))
