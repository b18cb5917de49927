"""Annotation converters to COCO-VID: CVAT for video 1.1, MOTChallenge and YOLO (docs/own_data.md)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dff.data.formats.common import SourceVideo, read_names, to_coco_vid, write_coco_vid
from dff.data.formats.cvat import FILE_PATTERN, read_cvat_video
from dff.data.formats.mot import read_mot
from dff.data.formats.yolo import read_yolo
from dff.errors import DatasetError

FORMATS = ("cvat-video", "mot", "yolo")


def read_videos(
    fmt: str,
    inputs: Sequence[Path | str],
    names: Path | str | None = None,
    file_pattern: str = FILE_PATTERN,
    img_root: Path | str | None = None,
) -> list[SourceVideo]:
    """Read every input of one format (``cvat-video``: XML files; ``mot``: sequence folders; ``yolo``: label
    folders). ``names`` is a class-names file (required for YOLO, optional for MOT); ``file_pattern`` names CVAT
    frames; ``img_root`` is what YOLO file names are relative to."""
    class_names = read_names(names) if names is not None else None
    if fmt == "cvat-video":
        return [read_cvat_video(p, file_pattern) for p in inputs]
    if fmt == "mot":
        return [read_mot(p, class_names) for p in inputs]
    if fmt == "yolo":
        if class_names is None:
            raise DatasetError(f"{inputs[0]}: YOLO labels need a class names file (--names classes.txt)")
        return [read_yolo(p, class_names, img_root) for p in inputs]
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


def convert_annotations(
    fmt: str,
    inputs: Sequence[Path | str],
    out: Path | str,
    names: Path | str | None = None,
    file_pattern: str = FILE_PATTERN,
    img_root: Path | str | None = None,
) -> dict:
    """Convert ``inputs`` (one video each) to one COCO-VID JSON at ``out``, checked as the trainer reads it."""
    data = to_coco_vid(read_videos(fmt, inputs, names, file_pattern, img_root))
    write_coco_vid(data, out)
    return data


__all__ = ["FORMATS", "FILE_PATTERN", "convert_annotations", "read_videos", "to_coco_vid", "write_coco_vid"]
