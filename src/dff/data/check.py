"""`check_dataset`: what `dff train` would refuse or silently skip in a COCO-VID file and its images.

Errors (training fails): a file :class:`~dff.data.cocovid.CocoVID` refuses (duplicate ids, unknown image or
category ids, frame-id gaps, boxes outside their image, ...), missing or unreadable frames (any frame of a video
can be drawn as a reference), no category of the model's classes, no usable key frame. Warnings (training runs
but ignores data): boxes :func:`~dff.data.train_dataset.parse_annotations` drops, images smaller than
``min_img_size``, frames whose size differs from the JSON, videos without boxes, classes without boxes,
categories that are not model classes, an instance twice in one frame.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from dff.data.cocovid import BOX_TOLERANCE, CocoVID
from dff.data.files import read_json
from dff.errors import DatasetError
from dff.io.image import read_image

EXAMPLES = 3
"""Offenders named per finding."""


@dataclass
class Finding:
    """One kind of problem: how many records have it and the first few, named by file."""

    error: bool
    what: str
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, example: str) -> None:
        """Count one more offender; keep its description if it is among the first few."""
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(example)


@dataclass
class DatasetReport:
    """The result of :func:`check_dataset`; ``format()`` is what `dff check-dataset` prints."""

    path: Path
    img_root: Path
    counts: dict[str, int]
    findings: list[Finding]

    @property
    def fails(self) -> bool:
        """True when `dff train` would refuse this dataset."""
        return any(f.error and f.count for f in self.findings)

    def format(self) -> str:
        """The report: a summary line, one line per finding present, the verdict."""
        c = self.counts
        lines = [
            f"{self.path} (images under {self.img_root}): {c['videos']} videos, {c['images']} images, "
            f"{c['annotations']} boxes, {c['categories']} classes; {c['key_frames']} usable key frames"
        ]
        for f in self.findings:
            if f.count:
                level = "error:  " if f.error else "warning:"
                lines.append(f"  {level} {f.what}: {f.count} (first: {'; '.join(f.examples)})")
        errors = sum(1 for f in self.findings if f.error and f.count)
        lines.append(f"training would fail: {errors} kind(s) of error" if errors else "training would accept it")
        return "\n".join(lines)


def _records(data: dict, key: str) -> list[dict]:
    """The object records of one list of the file (none when it is not a list)."""
    records = data.get(key)
    return [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []


def _key(value: object) -> object:
    """An id field as a dictionary key: a list or an object (the reader refuses them) by its text."""
    return repr(value) if isinstance(value, (list, dict)) else value


def _size(img: dict) -> tuple[int, int] | None:
    """(width, height) of an image record when both are positive whole numbers."""
    w, h = img.get("width"), img.get("height")
    ok = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (w, h))
    return (w, h) if ok else None


def _duplicates(data: dict, found: Finding) -> None:
    for key in ("categories", "videos", "images", "annotations"):
        counts = Counter(_key(r.get("id")) for r in _records(data, key))
        for rid, n in counts.items():
            if n > 1:
                found.add(f"{key[:-1] if key != 'categories' else 'category'} id {rid!r} x{n}")


def _box_problem(ann: dict, img: dict) -> tuple[bool, str] | None:
    """(is_error, why) for a box the reader refuses (error) or the trainer drops (warning); None if fine."""
    box = ann.get("bbox")
    numbers = (int, float)
    if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, numbers) and math.isfinite(v) for v in box)):
        return True, f"malformed bbox {box!r:.80}"
    area = ann.get("area", 1)
    if not (isinstance(area, numbers) and math.isfinite(area)):
        return True, f"malformed area {area!r:.40}"
    size = _size(img)
    if size is None:
        return None  # an image of no valid size: the reader's refusal names it
    width, height = size
    x1, y1, w, h = box
    if w < 0 or h < 0:
        return True, f"negative size {box}"
    t = BOX_TOLERANCE
    if x1 < -t or y1 < -t or x1 + w > width + t or y1 + h > height + t:
        return True, f"{box} outside {width}x{height}"
    if ann.get("ignore", False) or ann.get("iscrowd", False):
        return False, "ignore/crowd"
    inter_w = max(0, min(x1 + w, width) - max(x1, 0))
    inter_h = max(0, min(y1 + h, height) - max(y1, 0))
    if inter_w * inter_h == 0 or ann.get("area", w * h) <= 0 or w < 1 or h < 1:
        return False, f"{box} (w or h < 1 or no area)"
    return None


def _image_problem(path: Path, img: dict, decode: bool) -> tuple[bool, str] | None:
    if decode:
        try:
            h, w = read_image(path, DatasetError).shape[:2]
        except DatasetError:
            return True, "unreadable"
    else:
        try:
            with Image.open(path) as im:
                w, h = im.size
        except FileNotFoundError:
            return True, "missing"
        except (OSError, UnidentifiedImageError):
            return True, "unreadable"
    if (w, h) != (img.get("width"), img.get("height")):
        return False, f"is {w}x{h}, the JSON says {img.get('width')}x{img.get('height')}"
    return None


def check_dataset(
    ann: Path | str,
    img_root: Path | str,
    class_names: Sequence[str] | None = None,
    min_img_size: int = 32,
    decode: bool = False,
) -> DatasetReport:
    """Check ``ann`` and the images under ``img_root`` as `dff train` would use them.

    ``class_names`` are the model's classes (default: the file's own categories); ``decode`` decodes every image
    as the trainer does instead of reading its header only.
    """
    path, root = Path(ann), Path(img_root)
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DatasetError(f"{path}: not a COCO-VID file (no 'images' list)")
    refused = Finding(True, "the reader refuses the file")
    dupes = Finding(True, "duplicate ids")
    bad_ref = Finding(True, "annotations of an unknown image or category")
    bad_box = Finding(True, "impossible boxes (refused)")
    images_bad = Finding(True, "missing or unreadable images")
    no_class = Finding(True, "no category is a model class")
    no_keys = Finding(True, "no usable key frame")
    skipped_box = Finding(False, "boxes the trainer skips")
    size_diff = Finding(False, "images whose size differs from the JSON")
    small = Finding(False, f"images smaller than {min_img_size} px on a side (skipped)")
    empty_video = Finding(False, "videos without boxes")
    empty_class = Finding(False, "classes without boxes")
    other_class = Finding(False, "categories that are not model classes (their boxes are skipped)")
    twice = Finding(False, "an instance twice in one frame")
    findings = [refused, dupes, bad_ref, bad_box, images_bad, no_class, no_keys]
    findings += [skipped_box, size_diff, small, empty_video, empty_class, other_class, twice]

    _duplicates(data, dupes)
    images = {_key(im.get("id")): im for im in _records(data, "images")}
    categories = _records(data, "categories")
    cats = {_key(c.get("id")): c.get("name") for c in categories}
    model_classes = list(class_names) if class_names is not None else [c.get("name") for c in categories]
    known = {cid for cid, name in cats.items() if name in model_classes}
    for cid, name in cats.items():
        if cid not in known:
            other_class.add(f"{name!r} (id {cid})")
    if not known:
        no_class.add(f"categories {', '.join(str(n) for n in list(cats.values())[:5]) or '(none)'}")
    per_class: Counter = Counter()
    per_image: dict[object, list[dict]] = defaultdict(list)
    per_frame_instance: Counter = Counter()
    for ann_rec in _records(data, "annotations"):
        img = images.get(_key(ann_rec.get("image_id")))
        cid = _key(ann_rec.get("category_id"))
        where = f"annotation {ann_rec.get('id')!r:.40}"
        if img is None or cid not in cats:
            bad_ref.add(f"{where} (image {ann_rec.get('image_id')!r}, category {ann_rec.get('category_id')!r})")
            continue
        where += f" ({img.get('file_name')})"
        problem = _box_problem(ann_rec, img)
        if problem is not None:
            (bad_box if problem[0] else skipped_box).add(f"{where}: {problem[1]}")
            continue
        if cid in known:
            per_class[cid] += 1
            per_image[_key(img.get("id"))].append(ann_rec)
        if "instance_id" in ann_rec:
            key = (_key(img.get("id")), _key(ann_rec["instance_id"]))
            per_frame_instance[key] += 1
            if per_frame_instance[key] == 2:
                twice.add(f"instance {ann_rec['instance_id']!r} in {img.get('file_name')}")
    for cid in known:
        if not per_class[cid]:
            empty_class.add(repr(cats[cid]))

    try:
        CocoVID(data, path)
    except DatasetError as e:
        refused.add(str(e).removeprefix(f"{path}: "))

    key_frames = 0
    boxes_of_video: Counter = Counter()
    for img in images.values():
        if _size(img) is None or not isinstance(img.get("file_name"), str) or not img["file_name"]:
            continue
        boxes_of_video[_key(img.get("video_id"))] += len(per_image.get(_key(img.get("id")), []))
        problem = _image_problem(root / img["file_name"], img, decode)
        if problem is not None:
            (images_bad if problem[0] else size_diff).add(f"{img['file_name']}: {problem[1]}")
        if min(img["width"], img["height"]) < min_img_size:
            small.add(f"{img['file_name']} ({img['width']}x{img['height']})")
        elif per_image.get(_key(img.get("id"))) and img.get("is_vid_train_frame", True):
            key_frames += 1
    for video in _records(data, "videos"):
        if not boxes_of_video[_key(video.get("id"))]:
            empty_video.add(f"video {video.get('id')!r:.40} ({video.get('name', '')!s:.40})")
    if not key_frames:
        no_keys.add("no frame marked for training has a box of a model class")
    counts = dict(
        videos=len(_records(data, "videos")),
        images=len(images),
        annotations=len(_records(data, "annotations")),
        categories=len(categories),
        key_frames=key_frames,
    )
    return DatasetReport(path, root, counts, findings)
