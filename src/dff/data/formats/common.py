"""What every annotation converter produces: boxes per video frame, turned into COCO-VID as the trainer reads it.

A reader (:mod:`~dff.data.formats.cvat`, :mod:`~dff.data.formats.mot`, :mod:`~dff.data.formats.yolo`) returns a
:class:`SourceVideo`; :func:`to_coco_vid` numbers videos, images, annotations and instances the way
:mod:`dff.data.convert` does for ILSVRC (ids from 1, in input order; instance ids in order of first appearance,
global over videos) and writes the same fields in the same order. Boxes are clipped to the image (the trainer
refuses boxes outside it) and dropped when nothing is left of them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dff.data.cocovid import CocoVID
from dff.data.files import read_text
from dff.errors import DatasetError
from dff.io.atomic import write_json_atomic

log = logging.getLogger(__name__)

BOX_DECIMALS = 2
"""Box coordinates are rounded to this many decimals (CVAT's own precision)."""

MAX_FRAMES = 1_000_000
"""Frames a converter accepts in one video (nine hours at 30 fps): a larger count is a damaged file, not a video."""


@dataclass(frozen=True)
class SourceBox:
    """One box of a source file: ``box`` is ``(x1, y1, x2, y2)`` in pixels (``w = x2 - x1``)."""

    frame_id: int
    track: int  # the object's rank in its source: boxes with the same track are one instance
    label: str
    box: tuple[float, float, float, float]
    occluded: bool = False
    generated: bool = False
    extra: tuple[tuple[str, object], ...] = ()  # format-specific fields appended to the annotation


@dataclass
class SourceVideo:
    """One video read from an annotation file: its frames (file name and size per frame) and boxes."""

    name: str
    path: Path  # the file it was read from, named in errors
    file_names: list[str]
    sizes: list[tuple[int, int]]  # (width, height) per frame
    class_names: list[str]  # the classes the source declares, in its order
    boxes: list[SourceBox] = field(default_factory=list)


NAMES_HELP = "want one class name per line, or a dataset YAML with 'names'"


def _yaml_names(path: Path, data: object) -> list[str]:
    """The class names of an Ultralytics dataset YAML (``names`` a list, or a dict {0: name, 1: ...}; ``nc``
    checked when present)."""
    if not isinstance(data, dict) or "names" not in data:
        raise DatasetError(f"{path}: a YAML file without 'names' is not a class names file ({NAMES_HELP})")
    names = data["names"]
    if isinstance(names, dict):
        if any(type(k) is not int for k in names) or set(names) != set(range(len(names))):
            keys = ", ".join(repr(k) for k in list(names)[:5])
            raise DatasetError(f"{path}: 'names' must be numbered 0..{len(names) - 1}, got keys {keys}")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list):
        raise DatasetError(f"{path}: 'names' must be a list or {{index: name}}, got {type(names).__name__}")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise DatasetError(f"{path}: class {i} in 'names' is {name!r}, not a name (quote it in the YAML)")
    if "nc" in data and data["nc"] != len(names):
        raise DatasetError(f"{path}: nc is {data['nc']!r} but 'names' lists {len(names)} classes")
    return [n.strip() for n in names]


def _line_names(path: Path, text: str) -> list[str]:
    """One class name per line; a line that reads ``key: value`` means a YAML file that is not a dataset YAML."""
    names = []
    for n, line in enumerate(text.splitlines(), 1):
        name = line.strip()
        if not name:
            continue
        key, colon, value = name.partition(":")
        if colon and (not value or value[0].isspace()):
            raise DatasetError(f"{path}: line {n} reads like YAML ({name!r}), not a class name ({NAMES_HELP})")
        names.append(name)
    return names


def read_names(path: Path | str) -> list[str]:
    """A class-names file: YOLO's ``classes.txt`` / ``obj.names`` (one name per line, blank lines ignored) or
    Ultralytics' dataset YAML (``data.yaml``: ``names`` as a list or as {index: name}, ``nc`` checked).

    A file ending in ``.yaml`` / ``.yml``, or whose text is a YAML mapping, is read as the dataset YAML; anything
    else that is not one name per line (``key: value`` lines) is refused.
    """
    path = Path(path)
    text = read_text(path, "class names file")
    try:
        data = yaml.safe_load(text)
        parsed = True
    except yaml.YAMLError:
        data, parsed = None, False
    if path.suffix.lower() in (".yaml", ".yml") or isinstance(data, dict):
        if not parsed:
            raise DatasetError(f"{path}: malformed YAML ({NAMES_HELP})")
        names = _yaml_names(path, data)
    else:
        names = _line_names(path, text)
    if not names:
        raise DatasetError(f"{path}: the class names file lists no class")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DatasetError(f"{path}: class name {repeated[0]!r} is listed twice")
    return names


def _clip(box: tuple[float, float, float, float], width: int, height: int) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = box
    return (
        round(min(max(x1, 0.0), width), BOX_DECIMALS),
        round(min(max(y1, 0.0), height), BOX_DECIMALS),
        round(min(max(x2, 0.0), width), BOX_DECIMALS),
        round(min(max(y2, 0.0), height), BOX_DECIMALS),
    )


def _categories(videos: list[SourceVideo]) -> list[dict]:
    names: list[str] = []
    for v in videos:
        names += [n for n in v.class_names if n not in names]
    return [dict(id=i, name=n) for i, n in enumerate(names, 1)]


def to_coco_vid(videos: list[SourceVideo]) -> dict:
    """COCO-VID of the videos: categories are the declared classes (first declaration order), ids from 1.

    Within a frame, annotations follow their tracks' order in the source; every frame is a training frame.
    """
    seen: dict[str, Path] = {}
    for v in videos:
        if v.name in seen:
            raise DatasetError(f"{v.path}: video name {v.name!r} is also the name of {seen[v.name]}")
        seen[v.name] = v.path
    categories = _categories(videos)
    cat_id = {c["name"]: c["id"] for c in categories}
    out: dict = {"categories": categories, "videos": [], "images": [], "annotations": []}
    img_id = ann_id = instance_id = 1
    dropped = 0
    for vid_id, v in enumerate(videos, 1):
        out["videos"].append(dict(id=vid_id, name=v.name))
        first_img = img_id
        for frame_id, (file_name, (width, height)) in enumerate(zip(v.file_names, v.sizes)):
            out["images"].append(
                dict(
                    file_name=file_name,
                    height=height,
                    width=width,
                    id=img_id,
                    frame_id=frame_id,
                    video_id=vid_id,
                    is_vid_train_frame=True,
                )
            )
            img_id += 1
        instances: dict[int, int] = {}
        for b in sorted(v.boxes, key=lambda b: (b.frame_id, b.track)):
            width, height = v.sizes[b.frame_id]
            x1, y1, x2, y2 = _clip(b.box, width, height)
            if x2 <= x1 or y2 <= y1:
                dropped += 1
                continue
            if b.track not in instances:
                instances[b.track] = instance_id
                instance_id += 1
            w, h = round(x2 - x1, BOX_DECIMALS), round(y2 - y1, BOX_DECIMALS)
            out["annotations"].append(
                dict(
                    id=ann_id,
                    video_id=vid_id,
                    image_id=first_img + b.frame_id,
                    category_id=cat_id[b.label],
                    instance_id=instances[b.track],
                    bbox=[x1, y1, w, h],
                    area=round(w * h, 2 * BOX_DECIMALS),
                    iscrowd=False,
                    occluded=b.occluded,
                    generated=b.generated,
                    **dict(b.extra),
                )
            )
            ann_id += 1
    if dropped:
        log.warning("%d boxes lie wholly outside their image and were left out", dropped)
    log.info(
        "%d videos, %d images, %d boxes, %d instances, %d classes",
        len(out["videos"]),
        img_id - 1,
        ann_id - 1,
        instance_id - 1,
        len(categories),
    )
    return out


def write_coco_vid(data: dict, path: Path | str) -> Path:
    """Validate ``data`` as the trainer's reader does, then write it atomically; returns the path."""
    path = Path(path)
    CocoVID(data, path)
    write_json_atomic(data, path)
    return path
