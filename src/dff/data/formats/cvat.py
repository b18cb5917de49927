"""CVAT "for video 1.1" XML -> :class:`~dff.data.formats.common.SourceVideo` (one task = one video).

A ``<track>`` is one object (one instance id); its ``<box>`` elements carry ``frame``, ``keyframe``,
``outside``, ``occluded`` and the corners ``xtl ytl xbr ybr``. CVAT's export writes a box on every frame of a
track, the interpolated ones with ``keyframe="0"``; the XML format documentation calls the per-frame boxes
"cloned for each location". Mapping:

- ``outside="1"``: the object is not in the frame: no annotation;
- ``keyframe="1"``: drawn by the annotator: ``generated`` false; ``keyframe="0"`` (CVAT's interpolation):
  ``generated`` true, ILSVRC's meaning of the flag (a box not drawn by hand);
- ``occluded`` is copied;
- a track written only at its keyframes (hand-made or trimmed files) is filled in as CVAT shows it: linear
  interpolation between two boxes, the last box held until an ``outside`` box or the end of the task; the filled
  boxes are ``generated``.

Frame numbers are mapped through the task's ``start_frame`` and ``frame_filter`` (``step=N``) to ``0..size-1``.
A "CVAT for images" file (``<image>`` elements) is refused: it has no tracks.
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from pathlib import Path

from dff.data.files import read_xml
from dff.data.formats.common import MAX_FRAMES, SourceBox, SourceVideo
from dff.errors import DatasetError

log = logging.getLogger(__name__)

FILE_PATTERN = "{video}/{frame:06d}.jpg"
"""Default frame file name relative to the image root: what docs/own_data.md's frame extraction writes."""


def _int(path: Path, node: ET.Element | None, what: str, default: int | None = None) -> int:
    if node is None or not (node.text or "").strip():
        if default is not None:
            return default
        raise DatasetError(f"{path}: the task has no <{what}>")
    try:
        return int(node.text.strip())
    except ValueError:
        raise DatasetError(f"{path}: <{what}> is not a whole number: {node.text.strip()!r}") from None


def _task(path: Path, root: ET.Element) -> ET.Element:
    if root.tag != "annotations":
        raise DatasetError(f"{path}: not a CVAT XML file (root element <{root.tag}>, want <annotations>)")
    if root.find("image") is not None:
        raise DatasetError(
            f"{path}: a 'CVAT for images' file (<image> elements, no tracks); export the task as 'CVAT for video 1.1'"
        )
    tasks = root.findall("meta/task") + root.findall("meta/job") + root.findall("meta/project/tasks/task")
    if len(tasks) != 1:
        raise DatasetError(
            f"{path}: holds {len(tasks)} tasks; export each video task on its own as 'CVAT for video 1.1'"
        )
    return tasks[0]


def _labels(root: ET.Element, task: ET.Element) -> list[str]:
    nodes = task.findall("labels/label/name") or root.findall("meta/project/labels/label/name")
    return [n.text.strip() for n in nodes if n.text and n.text.strip()]


def _step(path: Path, task: ET.Element) -> int:
    text = (task.findtext("frame_filter") or "").strip()
    if not text:
        return 1
    key, _, value = text.partition("=")
    step = int(value) if value.strip().isdecimal() else 0
    if key.strip() != "step" or step < 1:
        raise DatasetError(f"{path}: unsupported <frame_filter> {text!r} (want step=N)")
    return step


def _float(path: Path, box: ET.Element, key: str, track_id: str) -> float:
    try:
        value = float(box.attrib[key])
    except (KeyError, ValueError):
        raise DatasetError(f"{path}: track {track_id}: a <box> has no valid {key!r}") from None
    if not math.isfinite(value):
        raise DatasetError(f"{path}: track {track_id}: the <box> on frame {box.attrib['frame']} has {key}={value}")
    return value


def _flag(box: ET.Element, key: str) -> bool:
    return box.attrib.get(key, "0").strip() in ("1", "true", "True")


def _track_boxes(
    path: Path, track: ET.Element, rank: int, label: str, start: int, step: int, size: int
) -> list[SourceBox]:
    """The track's boxes on every frame it is visible, interpolated where the file skips frames."""
    track_id = track.attrib.get("id", "?")
    shapes = []
    for box in track.findall("box"):
        try:
            frame = int(box.attrib["frame"])
        except (KeyError, ValueError):
            raise DatasetError(f"{path}: track {track_id}: a <box> has no valid 'frame'") from None
        rel, off = divmod(frame - start, step)
        outside = _flag(box, "outside")
        if off or not 0 <= rel < size + outside:  # an outside box may close a track just after the last frame
            raise DatasetError(
                f"{path}: track {track_id}: frame {frame} is not a frame of the task "
                f"(start {start}, step {step}, {size} frames)"
            )
        corners = tuple(_float(path, box, k, track_id) for k in ("xtl", "ytl", "xbr", "ybr"))
        if corners[2] < corners[0] or corners[3] < corners[1]:
            raise DatasetError(f"{path}: track {track_id}: the <box> on frame {frame} has xbr < xtl or ybr < ytl")
        shapes.append((rel, corners, outside, _flag(box, "occluded"), _flag(box, "keyframe")))
    shapes.sort(key=lambda s: s[0])
    out: list[SourceBox] = []
    for i, (frame, corners, outside, occluded, keyframe) in enumerate(shapes):
        if i and frame == shapes[i - 1][0]:
            raise DatasetError(f"{path}: track {track_id} has two boxes on frame {frame}")
        if outside:
            continue
        out.append(SourceBox(frame, rank, label, corners, occluded, not keyframe))
        end, target = (shapes[i + 1][0], shapes[i + 1][1]) if i + 1 < len(shapes) else (size, corners)
        if i + 1 < len(shapes) and shapes[i + 1][2]:
            target = corners  # towards an outside box CVAT holds the last box
        for f in range(frame + 1, end):
            t = (f - frame) / (end - frame)
            box = tuple(a + (b - a) * t for a, b in zip(corners, target))
            out.append(SourceBox(f, rank, label, box, occluded, True))
    return out


def read_cvat_video(path: Path | str, file_pattern: str = FILE_PATTERN, name: str | None = None) -> SourceVideo:
    """Read one CVAT for video 1.1 XML; frame ``i`` is ``file_pattern.format(video=name, frame=i)``.

    ``name`` defaults to the file's stem (its folder's name for CVAT's ``annotations.xml``).
    """
    path = Path(path)
    root = read_xml(path, "CVAT XML file")
    task = _task(path, root)
    size = _int(path, task.find("size"), "size")
    start, step = _int(path, task.find("start_frame"), "start_frame", 0), _step(path, task)
    width = _int(path, task.find("original_size/width"), "original_size/width")
    height = _int(path, task.find("original_size/height"), "original_size/height")
    if size < 1 or width < 1 or height < 1:
        raise DatasetError(f"{path}: the task has {size} frames of {width}x{height} pixels")
    if size > MAX_FRAMES:
        raise DatasetError(f"{path}: the task has {size} frames, more than {MAX_FRAMES}")
    labels = _labels(root, task)
    if name is None:
        name = path.parent.resolve().name if path.stem == "annotations" else path.stem
    try:
        file_names = [file_pattern.format(video=name, frame=i) for i in range(size)]
    except (KeyError, IndexError, ValueError) as e:
        raise DatasetError(f"{path}: bad frame file pattern {file_pattern!r} ({e})") from None
    video = SourceVideo(name, path, file_names, [(width, height)] * size, labels)
    skipped = 0
    for rank, track in enumerate(root.findall("track")):
        label = track.attrib.get("label", "")
        if label not in labels:
            raise DatasetError(f"{path}: track {track.attrib.get('id', '?')} has undeclared label {label!r}")
        skipped += sum(1 for child in track if child.tag != "box")
        video.boxes += _track_boxes(path, track, rank, label, start, step, size)
    if skipped:
        log.warning("%s: %d shapes that are not boxes (polygons, points, ...) were left out", path, skipped)
    return video
