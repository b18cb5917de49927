"""Reader and validator for COCO-VID JSON (mmtracking's video format) and plain COCO JSON (ImageNet DET).

COCO-VID (``imagenet_vid_{train,val}.json`` or a user's own videos)::

    {"categories": [{"id", "name", ...}],
     "videos":     [{"id", "name", ...}],
     "images":     [{"id", "file_name", "height", "width", "video_id", "frame_id", "is_vid_train_frame"?}],
     "annotations":[{"id", "image_id", "category_id", "bbox": [x1, y1, w, h], "instance_id"?, ...}]}

Without a ``videos`` key the file is read as still images (the DET JSON). :meth:`CocoVID.load` validates the
file and raises :class:`~dff.errors.DatasetError` naming the file and the offending record: duplicate ids,
images of an unknown video, frame ids that are not exactly ``0..n-1`` within a video, a video without frames,
annotations of an unknown image or category, and boxes that are malformed or outside their image.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from dff.data.files import read_json
from dff.errors import DatasetError

BOX_TOLERANCE = 1.0
"""Pixels a box may extend past the image border before it counts as outside (ILSVRC's inclusive xmax)."""

MOTION_FRAME_RANGE = 10
"""FGFA's motion IoU compares a box with the same instance in frames within this distance."""


def _require(path: Path, record: dict, keys: tuple[str, ...], what: str) -> None:
    missing = [k for k in keys if k not in record]
    if missing:
        raise DatasetError(f"{path}: {what} {record.get('id', '?')!r} lacks field(s) {', '.join(missing)}")


def _ids(path: Path, record: dict, keys: tuple[str, ...], what: str) -> None:
    """DatasetError when one of the record's id fields is a list or an object (an id is a number or a string)."""
    for key in keys:
        if isinstance(record.get(key), (list, dict)):
            raise DatasetError(f"{path}: {what} {key} {record[key]!r:.40} is not a number or a string")


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _unique_ids(path: Path, records: list, what: str) -> dict:
    by_id: dict = {}
    for r in records:
        if not isinstance(r, dict):
            raise DatasetError(f"{path}: a {what} record is not an object: {r!r:.80}")
        _require(path, r, ("id",), what)
        _ids(path, r, ("id",), what)
        if r["id"] in by_id:
            raise DatasetError(f"{path}: duplicate {what} id {r['id']!r}")
        by_id[r["id"]] = r
    return by_id


class CocoVID:
    """A validated COCO-VID (or COCO) annotation file; see the module docstring for the schema."""

    def __init__(self, data: dict, path: Path | str = "<memory>", check_boxes: bool = True) -> None:
        self.path = Path(path)
        if not isinstance(data, dict):
            raise DatasetError(f"{self.path}: top level must be a JSON object")
        for key in ("categories", "images"):
            if not isinstance(data.get(key), list):
                raise DatasetError(f"{self.path}: missing list {key!r}")
        for key in ("videos", "annotations"):
            if key in data and not isinstance(data[key], list):
                raise DatasetError(f"{self.path}: {key!r} must be a list")
        self.is_video = "videos" in data
        self.categories: list[dict] = data["categories"]
        self.videos: list[dict] = data.get("videos", [])
        self.images: list[dict] = data["images"]
        self._annotations: list[dict] = data.get("annotations", [])
        self._cats = _unique_ids(self.path, self.categories, "category")
        self._videos = _unique_ids(self.path, self.videos, "video")
        self._images = _unique_ids(self.path, self.images, "image")
        self._anns = _unique_ids(self.path, self._annotations, "annotation")
        for cat in self.categories:
            if not isinstance(cat.get("name", ""), str):
                raise DatasetError(f"{self.path}: category {cat['id']!r} has name {cat['name']!r:.40} (want a string)")
        self._frames: dict[object, list[dict]] = {}
        self._img_anns: dict[object, list[dict]] = defaultdict(list)
        self._validate_images()
        self._validate_annotations(check_boxes)

    @classmethod
    def load(cls, path: Path | str, check_boxes: bool = True) -> CocoVID:
        """Read and validate a JSON file; DatasetError names the file and the offending record."""
        path = Path(path)
        return cls(read_json(path), path, check_boxes)

    def _validate_images(self) -> None:
        keys = ("file_name", "height", "width") + (("video_id", "frame_id") if self.is_video else ())
        per_video: dict[object, dict[int, dict]] = defaultdict(dict)
        for img in self.images:
            _require(self.path, img, keys, "image")
            _ids(self.path, img, ("video_id",), f"image {img['id']!r}")
            if not isinstance(img["file_name"], str) or not img["file_name"]:
                raise DatasetError(f"{self.path}: image {img['id']!r} has file_name {img['file_name']!r:.40}")
            where = f"image {img['id']!r} ({img['file_name']})"
            if not all(isinstance(img[k], int) and img[k] > 0 for k in ("height", "width")):
                raise DatasetError(f"{self.path}: {where} has invalid size {img['width']!r}x{img['height']!r}")
            if "is_vid_train_frame" in img and not isinstance(img["is_vid_train_frame"], bool):
                raise DatasetError(f"{self.path}: {where}: is_vid_train_frame must be true or false")
            if not self.is_video:
                continue
            if img["video_id"] not in self._videos:
                raise DatasetError(f"{self.path}: {where} has unknown video_id {img['video_id']!r}")
            fid = img["frame_id"]
            if not isinstance(fid, int) or fid < 0:
                raise DatasetError(f"{self.path}: {where} has invalid frame_id {fid!r}")
            frames = per_video[img["video_id"]]
            if fid in frames:
                raise DatasetError(
                    f"{self.path}: {where} repeats frame_id {fid} of video {img['video_id']!r}"
                    f" (also image {frames[fid]['id']!r})"
                )
            frames[fid] = img
        for vid in self.videos:
            frames = per_video.get(vid["id"], {})
            if not frames:
                raise DatasetError(f"{self.path}: video {vid['id']!r} ({vid.get('name', '')}) has no frames")
            missing = sorted(set(range(len(frames))) - set(frames))
            if missing:
                raise DatasetError(
                    f"{self.path}: video {vid['id']!r} ({vid.get('name', '')}) has a frame_id gap: "
                    f"frame {missing[0]} is missing (frame ids must run 0..n-1)"
                )
            self._frames[vid["id"]] = [frames[i] for i in range(len(frames))]

    def _validate_annotations(self, check_boxes: bool) -> None:
        for ann in self._annotations:
            _require(self.path, ann, ("image_id", "category_id", "bbox"), "annotation")
            where = f"annotation {ann['id']!r}"
            _ids(self.path, ann, ("image_id", "category_id", "video_id", "instance_id"), where)
            img = self._images.get(ann["image_id"])
            if img is None:
                raise DatasetError(f"{self.path}: {where} refers to unknown image_id {ann['image_id']!r}")
            if ann["category_id"] not in self._cats:
                raise DatasetError(f"{self.path}: {where} has unknown category_id {ann['category_id']!r}")
            if self.is_video and "video_id" in ann and ann["video_id"] != img["video_id"]:
                raise DatasetError(
                    f"{self.path}: {where} has video_id {ann['video_id']!r} but its image "
                    f"{img['id']!r} belongs to video {img['video_id']!r}"
                )
            box = ann["bbox"]
            if not (isinstance(box, list) and len(box) == 4 and all(_number(v) for v in box)):
                raise DatasetError(f"{self.path}: {where} has malformed bbox {box!r:.80} (want [x1, y1, w, h])")
            if "area" in ann and not _number(ann["area"]):
                raise DatasetError(f"{self.path}: {where} has malformed area {ann['area']!r:.40}")
            x1, y1, w, h = box
            if w < 0 or h < 0:
                raise DatasetError(f"{self.path}: {where} has negative box size {box!r}")
            t = BOX_TOLERANCE
            if check_boxes and (x1 < -t or y1 < -t or x1 + w > img["width"] + t or y1 + h > img["height"] + t):
                raise DatasetError(
                    f"{self.path}: {where} box {box!r} lies outside image {img['id']!r} "
                    f"({img['file_name']}, {img['width']}x{img['height']})"
                )
            self._img_anns[ann["image_id"]].append(ann)

    def video(self, video_id: object) -> dict:
        """The video record with this id."""
        return self._videos[video_id]

    def image(self, image_id: object) -> dict:
        """The image record with this id."""
        return self._images[image_id]

    def frames(self, video_id: object) -> list[dict]:
        """The images of a video ordered by frame_id (0..n-1)."""
        return self._frames[video_id]

    def annotations(self, image_id: object) -> list[dict]:
        """The annotations of an image in file order (empty list if none)."""
        return self._img_anns.get(image_id, [])

    def all_annotations(self) -> list[dict]:
        """Every annotation in file order."""
        return self._annotations

    def category_ids(self, class_names: Sequence[str]) -> list[int]:
        """The category id of each of a model's classes, by name (mmtracking's `get_cat_ids(cat_names=CLASSES)`);
        DatasetError naming the first classes the file lacks."""
        by_name = {c.get("name"): c["id"] for c in self.categories}
        missing = [n for n in class_names if n not in by_name]
        if missing:
            raise DatasetError(f"{self.path}: no category named {', '.join(missing[:3])} (the model's classes)")
        return [by_name[n] for n in class_names]

    def iter_videos(self) -> Iterator[tuple[dict, list[dict]]]:
        """Yield ``(video, frames)`` for every video in file order, frames ordered by frame_id from 0."""
        if not self.is_video:
            raise DatasetError(f"{self.path}: has no videos (a still-image COCO file)")
        for video in self.videos:
            yield video, self._frames[video["id"]]


def _iou_xywh(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU (no +1) of one [x1, y1, w, h] box with (N, 4) others."""
    ix = np.clip(np.minimum(box[0] + box[2], others[:, 0] + others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[1] + box[3], others[:, 1] + others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = ix * iy
    union = box[2] * box[3] + others[:, 2] * others[:, 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def motion_iou(coco: CocoVID, frame_range: int = MOTION_FRAME_RANGE) -> dict[object, float]:
    """FGFA motion IoU of every annotation with an ``instance_id``: annotation id -> mean IoU.

    The mean is over the same instance's boxes in the other frames within ``frame_range`` (the box itself
    excluded). An instance seen in no such frame gets NaN (it falls in no speed bucket). IoU is COCO's (no +1).
    Buckets (FGFA): fast < 0.7, medium 0.7-0.9, slow > 0.9.
    """
    tracks: dict[tuple, list[tuple[int, dict]]] = defaultdict(list)
    for ann in coco.all_annotations():
        if "instance_id" not in ann:
            continue
        img = coco.image(ann["image_id"])
        tracks[(img.get("video_id"), ann["instance_id"])].append((img.get("frame_id", 0), ann))
    out: dict[object, float] = {}
    for items in tracks.values():
        frames = np.array([f for f, _ in items])
        boxes = np.array([a["bbox"] for _, a in items], dtype=np.float64)
        for i, (f, ann) in enumerate(items):
            near = (np.abs(frames - f) <= frame_range) & (frames != f)
            out[ann["id"]] = float(_iou_xywh(boxes[i], boxes[near]).mean()) if near.any() else float("nan")
    return out
