"""`FrameResult`: the one result schema of a frame, and its one JSON record.

Every consumer reads the same object: the Python API (`model.predict`), the JSONL of `dff detect` (one record per
line), the results file of `dff test` (the same records with the dataset's video and image ids), the COCO results
(`coco_items`), the MOTChallenge tracks, the annotated video (`plot`), supervision (`to_supervision`).

Floats in a record are the shortest decimals that read back as the same float32, so a record holds exactly the
detector's outputs and `FrameResult.from_record(r.to_record())` equals `r`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from dff.errors import DFFError, InputError

if TYPE_CHECKING:
    import supervision

    from dff.io.draw import TrackTrails


@dataclass
class FrameResult:
    """Detections of one frame, in original pixels, sorted by descending score, and where they came from.

    frame_index: 0-based position in the source; time_s: its time in seconds from the source (None when the frames
    came as bare arrays); is_key_frame / key_reason: whether the backbone ran on it and why ("first", "interval",
    "cut", ...); key_index: the frame whose backbone features it used (itself for a key frame); class_names: the
    model's classes, so `names` gives each detection's name; track_ids: set by dff.tracking (-1: in no confirmed
    track); image: the frame (BGR) when the run keeps frames; flow: the feature-resolution flow when asked;
    video_id / image_id: the dataset's ids in an evaluation; arrival_s / ready_s: in a live run, when the frame
    arrived and when its result was ready (seconds on the run's clock).
    """

    boxes: np.ndarray  # float32 (N, 4) x1, y1, x2, y2
    scores: np.ndarray  # float32 (N,)
    labels: np.ndarray  # int64 (N,) index into class_names
    frame_index: int
    is_key_frame: bool
    key_reason: str | None = None
    time_s: float | None = None
    key_index: int | None = None
    class_names: tuple[str, ...] = ()
    track_ids: np.ndarray | None = None  # int64 (N,)
    image: np.ndarray | None = None  # uint8 (H, W, 3) BGR
    flow: np.ndarray | None = None  # float32 (2, h, w), non-key frames
    video_id: int | None = None
    image_id: int | None = None
    arrival_s: float | None = None
    ready_s: float | None = None

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def names(self) -> list[str]:
        """The class name of each detection (InputError for a label outside `class_names`)."""
        bad = self.labels[(self.labels < 0) | (self.labels >= len(self.class_names))]
        if len(bad):
            raise InputError(
                f"frame {self.frame_index}: label {int(bad[0])} is not among the {len(self.class_names)} classes"
            )
        return [self.class_names[int(c)] for c in self.labels]

    @property
    def latency_s(self) -> float | None:
        """Seconds from the frame's arrival to its result (live runs)."""
        return None if self.arrival_s is None or self.ready_s is None else self.ready_s - self.arrival_s

    def subset(self, keep: np.ndarray) -> FrameResult:
        """This result with only the detections where `keep` (a boolean mask or indices) selects them."""
        track_ids = None if self.track_ids is None else self.track_ids[keep]
        return replace(
            self, boxes=self.boxes[keep], scores=self.scores[keep], labels=self.labels[keep], track_ids=track_ids
        )

    def to_record(self) -> dict[str, Any]:
        """The JSON object of this frame (module docstring): frame, time_s, key, key_reason, key_frame, detections
        (bbox [x1, y1, x2, y2] original pixels, score, class_id, label when the class names are known, track_id when
        tracked), then video_id / image_id when set and arrival_s / ready_s / latency_s in a live run."""
        n = len(self.scores)
        if self.track_ids is not None and len(self.track_ids) != n:
            raise InputError(f"frame {self.frame_index}: {len(self.track_ids)} track ids for {n} detections")
        boxes = exact_floats(np.asarray(self.boxes, np.float32).reshape(-1, 4)).tolist()
        scores = exact_floats(self.scores).tolist()
        names = self.names if self.class_names else None
        detections = []
        for i in range(n):
            d: dict[str, Any] = {"bbox": boxes[i], "score": scores[i], "class_id": int(self.labels[i])}
            if names is not None:
                d["label"] = names[i]
            if self.track_ids is not None:
                d["track_id"] = int(self.track_ids[i])
            detections.append(d)
        record: dict[str, Any] = {
            "frame": int(self.frame_index),
            "time_s": None if self.time_s is None else round(float(self.time_s), 6),
            "key": bool(self.is_key_frame),
            "key_reason": self.key_reason,
            "key_frame": None if self.key_index is None else int(self.key_index),
            "detections": detections,
        }
        for name in ("video_id", "image_id"):
            if getattr(self, name) is not None:
                record[name] = int(getattr(self, name))
        if self.arrival_s is not None:
            record["arrival_s"] = round(float(self.arrival_s), 6)
        if self.ready_s is not None:
            record["ready_s"] = round(float(self.ready_s), 6)
        if self.latency_s is not None:
            record["latency_s"] = round(float(self.latency_s), 6)
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any], class_names: Sequence[str] = ()) -> FrameResult:
        """The result a record (`to_record`) describes; KeyError / ValueError / TypeError when it is not one."""
        dets = record["detections"]
        tracked = bool(dets) and all("track_id" in d for d in dets)
        return cls(
            boxes=np.asarray([d["bbox"] for d in dets], np.float32).reshape(-1, 4),
            scores=np.asarray([d["score"] for d in dets], np.float32),
            labels=np.asarray([d["class_id"] for d in dets], np.int64),
            frame_index=int(record["frame"]),
            is_key_frame=bool(record["key"]),
            key_reason=record.get("key_reason"),
            time_s=record.get("time_s"),
            key_index=record.get("key_frame"),
            class_names=tuple(class_names),
            track_ids=np.asarray([d["track_id"] for d in dets], np.int64) if tracked else None,
            video_id=record.get("video_id"),
            image_id=record.get("image_id"),
            arrival_s=record.get("arrival_s"),
            ready_s=record.get("ready_s"),
        )

    def coco_items(self, category_id: Callable[[int], int] | None = None) -> list[dict[str, Any]]:
        """This frame as COCO results: {image_id, category_id, bbox [x, y, w, h], score[, track_id]} per detection.

        image_id: the dataset's (`image_id`) when set, else the frame's 1-based number (frame_index + 1, as the
        project's COCO-VID files number a video's frames); category_id: `category_id(class index)` (an annotation
        file's ids), else the class index + 1. The float32 values as float64, the width and height computed in
        float64 (as mmdet's `xyxy2xywh` on `.tolist()`), so that every reader scores exactly the same numbers.
        """
        image_id = self.image_id if self.image_id is not None else int(self.frame_index) + 1
        ids = [None] * len(self.scores) if self.track_ids is None else self.track_ids.tolist()
        items = []
        for (x1, y1, x2, y2), score, c, track_id in zip(
            np.asarray(self.boxes, np.float32).reshape(-1, 4).tolist(), self.scores.tolist(), self.labels.tolist(), ids
        ):
            item = {
                "image_id": int(image_id),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": float(score),
                "category_id": int(category_id(c) if category_id is not None else c + 1),
            }
            if track_id is not None:
                item["track_id"] = int(track_id)
            items.append(item)
        return items

    def plot(self, image: np.ndarray | None = None, trails: TrackTrails | None = None) -> np.ndarray:
        """The frame (`image`, or the one this result kept) with its detections drawn as `dff detect --out-video`
        draws them: boxes, 'name score' labels (with '#id' when tracked), the frame marker; with `trails`, the
        tracks' trails (updated with this frame). Returns a new BGR array."""
        from dff.io.draw import draw_detections, draw_frame_marker

        picture = self.image if image is None else image
        if picture is None:
            raise DFFError(f"frame {self.frame_index}: no image to draw on; pass one, or run with keep_frames=True")
        names = self.class_names or tuple(str(i) for i in range(int(self.labels.max(initial=-1)) + 1))
        out = draw_detections(picture, self.boxes, self.scores, self.labels, names, self.track_ids)
        if trails is not None and self.track_ids is not None:
            trails.update(self.boxes, self.track_ids)
            trails.draw(out, self.track_ids)
        return draw_frame_marker(out, self.frame_index, self.is_key_frame)

    def to_supervision(self) -> supervision.Detections:
        """The detections as supervision's `sv.Detections` (xyxy, confidence, class_id, tracker_id when tracked,
        data["class_name"] when the class names are known); needs the optional 'track' extra."""
        try:
            import supervision as sv
        except ImportError:
            raise DFFError(
                "FrameResult.to_supervision needs the optional 'track' extra (supervision is not installed): "
                "pip install 'deep-feature-flow[track]'"
            ) from None
        names = self.names if self.class_names else None
        return sv.Detections(
            xyxy=np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4),
            confidence=np.asarray(self.scores, dtype=np.float32),
            class_id=np.asarray(self.labels, dtype=int),
            tracker_id=None if self.track_ids is None else np.asarray(self.track_ids, dtype=int),
            data={} if names is None else {"class_name": np.array(names, dtype=str)},
        )


def exact_floats(values: np.ndarray) -> np.ndarray:
    """float32 values as Python floats whose repr is the shortest one that reads back as the same float32."""
    flat = np.asarray(values, np.float32).ravel()
    return np.array([float(s) for s in map(str, flat)], dtype=object).reshape(np.shape(values))
