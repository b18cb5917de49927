"""ILSVRC2015 (ImageNet VID/DET) raw inputs: the FGFA list files and the per-image XML annotations.

The list files live in ``<root>/Lists`` (docs/mmtracking_spec.md §7.1) and are the ones FGFA ships as ``ImageSets``:

- ``VID_train_15frames.txt``: ``<video dir> 1 <1-based frame number> <num frames>``, 15 lines per video;
- ``VID_val_videos.txt``: ``<video dir> <first global frame, 1-based> 0 <num frames>``, one line per video;
- ``DET_train_30classes.txt``: ``<image path without .JPEG> 1``; a path may appear more than once.

Parsers keep mmtracking's reading (first whitespace field, last field, ``int(field[2]) - 1``) and raise
:class:`~dff.errors.DatasetError` naming the file and line when a line cannot be read that way.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from dff.data.files import read_text, read_xml
from dff.errors import DatasetError

VID_TRAIN_LIST = "Lists/VID_train_15frames.txt"
VID_VAL_LIST = "Lists/VID_val_videos.txt"
DET_TRAIN_LIST = "Lists/DET_train_30classes.txt"


@dataclass
class VideoEntry:
    """One video of a VID list: its directory (e.g. ``val/ILSVRC2015_val_00000000``), length and train frames."""

    name: str
    num_frames: int
    train_frames: list[int] = field(default_factory=list)  # 0-based, in list order (empty for val)


@dataclass(frozen=True)
class XmlObject:
    """One ``<object>`` of an ILSVRC XML; fields absent from the file are None."""

    name: str  # WNID
    bbox: tuple[int, int, int, int] | None  # xmin, ymin, xmax, ymax as written
    trackid: str | None
    occluded: str | None
    generated: str | None


@dataclass(frozen=True)
class XmlAnnotation:
    """The parts of an ILSVRC XML annotation that the converters use."""

    width: int
    height: int
    objects: tuple[XmlObject, ...]


def _read_lines(path: Path) -> list[str]:
    """The lines of a list file; DatasetError if it is missing, unreadable or not UTF-8."""
    return read_text(path, "list file").splitlines()


def _fields(path: Path, lineno: int, line: str, min_fields: int) -> list[str]:
    fields = line.split()
    if len(fields) < min_fields:
        raise DatasetError(f"{path}:{lineno}: expected at least {min_fields} fields, got {line!r}")
    return fields


def _int(path: Path, lineno: int, text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DatasetError(f"{path}:{lineno}: {what} is not an integer: {text!r}") from None


def parse_vid_train_list(path: Path) -> list[VideoEntry]:
    """``VID_train_15frames.txt`` -> videos in first-seen order with their 0-based train frames."""
    videos: dict[str, VideoEntry] = {}
    for lineno, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        f = _fields(path, lineno, line, 4)
        frame = _int(path, lineno, f[2], "frame number") - 1
        num_frames = _int(path, lineno, f[-1], "frame count")
        entry = videos.get(f[0])
        if entry is None:
            videos[f[0]] = VideoEntry(f[0], num_frames, [frame])
        else:
            entry.train_frames.append(frame)
    return list(videos.values())


def parse_vid_val_list(path: Path) -> list[VideoEntry]:
    """``VID_val_videos.txt`` -> videos in first-seen order (a repeated name keeps its place, last count wins)."""
    videos: dict[str, VideoEntry] = {}
    for lineno, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        f = _fields(path, lineno, line, 2)
        videos[f[0]] = VideoEntry(f[0], _int(path, lineno, f[-1], "frame count"))
    return list(videos.values())


def parse_det_train_list(path: Path) -> list[str]:
    """``DET_train_30classes.txt`` -> image paths without extension, in file order, duplicates kept."""
    return [line.split()[0] for line in _read_lines(path) if line.strip()]


def _child_text(node: ET.Element, tag: str) -> str | None:
    child = node.find(tag)
    return None if child is None or child.text is None else child.text.strip()


def _required_int(path: Path, node: ET.Element, tag: str, where: str) -> int:
    text = _child_text(node, tag)
    if text is None:
        raise DatasetError(f"{path}: missing <{tag}> in {where}")
    try:
        return int(text)
    except ValueError:
        raise DatasetError(f"{path}: <{tag}> in {where} is not an integer: {text!r}") from None


def parse_xml(path: Path) -> XmlAnnotation:
    """Read one ILSVRC annotation XML (VID or DET); DatasetError names the file on any problem."""
    root = read_xml(path, "annotation file")
    size = root.find("size")
    if size is None:
        raise DatasetError(f"{path}: missing <size>")
    width = _required_int(path, size, "width", "<size>")
    height = _required_int(path, size, "height", "<size>")
    objects = []
    for i, obj in enumerate(root.findall("object")):
        name = _child_text(obj, "name")
        if not name:
            raise DatasetError(f"{path}: <object> #{i} has no <name>")
        box_node = obj.find("bndbox")
        bbox = None
        if box_node is not None:
            where = f"<object> #{i} <bndbox>"
            bbox = tuple(_required_int(path, box_node, t, where) for t in ("xmin", "ymin", "xmax", "ymax"))
        objects.append(
            XmlObject(
                name=name,
                bbox=bbox,
                trackid=_child_text(obj, "trackid"),
                occluded=_child_text(obj, "occluded"),
                generated=_child_text(obj, "generated"),
            )
        )
    return XmlAnnotation(width=width, height=height, objects=tuple(objects))
