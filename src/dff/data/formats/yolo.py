"""YOLO per-frame label folders -> :class:`~dff.data.formats.common.SourceVideo` (one folder = one video).

Each frame image has a ``<stem>.txt`` with one box per line, ``class cx cy w h``: a 0-based class index into
the names file and the box centre and size as fractions of the image's width and height. A frame without a
``.txt`` has no objects. The images lie beside the ``.txt`` files (CVAT's YOLO export, darknet) or in the
``images`` folder that mirrors a ``labels`` folder (Ultralytics); frames are the images in file-name order and
their sizes are read from the images. YOLO has no track ids: every box is its own instance (so the motion-IoU
buckets, which follow instances over frames, have no objects), and no occluded or generated flags (false).
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from dff.data.files import read_text
from dff.data.formats.common import SourceBox, SourceVideo
from dff.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _image_folder(labels: Path) -> Path:
    if _images(labels):
        return labels
    parts = labels.parts
    if "labels" in parts:
        i = len(parts) - 1 - parts[::-1].index("labels")
        mirror = Path(*parts[:i], "images", *parts[i + 1 :])
        if mirror.is_dir() and _images(mirror):
            return mirror
    raise DatasetError(f"{labels}: no frame images here or in the matching images/ folder")


def _size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, UnidentifiedImageError):
        raise DatasetError(f"{path}: not a readable image") from None


def read_yolo(folder: Path | str, class_names: list[str], img_root: Path | str | None = None) -> SourceVideo:
    """Read one folder of per-frame label files; file names are relative to ``img_root``.

    ``img_root`` defaults to the parent of the image folder (so a file name is ``<video>/<image>``).
    """
    labels = Path(folder)
    if not labels.is_dir():
        raise DatasetError(f"{labels}: YOLO label folder does not exist")
    img_dir = _image_folder(labels)
    root = Path(img_root) if img_root is not None else img_dir.parent
    images = _images(img_dir)
    stems = {p.stem for p in images}
    for txt in sorted(labels.glob("*.txt")):
        if txt.stem not in stems and txt.name not in ("classes.txt", "obj.names"):
            raise DatasetError(f"{txt}: no frame image {txt.stem}.* in {img_dir}")
    file_names = [Path(os.path.relpath(p.absolute(), root.absolute())).as_posix() for p in images]
    if file_names[0].startswith("../"):
        raise DatasetError(f"{img_dir}: the images are not under the image root {root}")
    video = SourceVideo(img_dir.name, labels, file_names, [_size(p) for p in images], list(class_names))
    track = 0
    for frame_id, (img, (width, height)) in enumerate(zip(images, video.sizes)):
        txt = labels / f"{img.stem}.txt"
        if not txt.is_file():
            continue
        for n, line in enumerate(read_text(txt, "YOLO label file").splitlines(), 1):
            cols = line.split()
            if not cols:
                continue
            if len(cols) != 5:
                raise DatasetError(f"{txt}: line {n} has {len(cols)} columns, want 5 (class cx cy w h)")
            try:
                cls = int(cols[0])
                cx, cy, w, h = (float(c) for c in cols[1:])
            except ValueError:
                raise DatasetError(f"{txt}: line {n} has a value that is not a number: {line.strip()!r}") from None
            if not all(0 <= v <= 1 for v in (cx, cy, w, h)):  # Ultralytics' rule (NaN fails it too)
                raise DatasetError(
                    f"{txt}: line {n}: cx cy w h must be fractions of the image, 0 to 1: {line.strip()!r}"
                )
            if not 0 <= cls < len(class_names):
                raise DatasetError(f"{txt}: line {n}: class {cls} is outside 0..{len(class_names) - 1} (the names)")
            box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
            video.boxes.append(SourceBox(frame_id, track, class_names[cls], box))
            track += 1
    return video
