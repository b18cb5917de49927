"""ILSVRC2015 root -> mmtracking's COCO-VID / COCO JSON files (docs/mmtracking_spec.md §7).

The output is the JSON that mmtracking's ``imagenet2coco_vid.py`` and ``imagenet2coco_det.py`` write: the same
ids, ordering, fields and key order, serialised with ``json.dump``'s defaults as ``mmcv.dump`` does. Differences
are deliberate and only concern bad input: a missing or malformed XML, an impossible image size or box (xmin >
xmax, a negative coordinate, a box past the image by more than the loader's ``BOX_TOLERANCE``), a video with no
frames or a missing image raises :class:`~dff.errors.DatasetError` naming the file (and the object), and every
JSON is written atomically (temp file + ``os.replace``), so a failed run never leaves a half-written file.
"""

from __future__ import annotations

import glob
import logging
import os
from pathlib import Path

from tqdm import tqdm

from dff.classes import VID_CLASSES, VID_WNIDS
from dff.data.cocovid import BOX_TOLERANCE
from dff.data.ilsvrc import (
    DET_TRAIN_LIST,
    VID_TRAIN_LIST,
    VID_VAL_LIST,
    XmlAnnotation,
    XmlObject,
    parse_det_train_list,
    parse_vid_train_list,
    parse_vid_val_list,
    parse_xml,
)
from dff.errors import DatasetError
from dff.io.atomic import write_json_atomic

log = logging.getLogger(__name__)

VID_OUTPUTS = {"train": "imagenet_vid_train.json", "val": "imagenet_vid_val.json"}
DET_OUTPUT = "imagenet_det_30plus1cls.json"
DET_OTHER_CATEGORY = "other_categeries"  # sic, as mmtracking spells it
DET_SUBSETS = ("train/ILSVRC2013_train",) + tuple(f"train/ILSVRC2014_train_000{i}" for i in range(7))

_CATEGORY_ID = {wnid: i for i, wnid in enumerate(VID_WNIDS, 1)}


def vid_categories() -> list[dict]:
    """The 30 VID categories: ``{id: 1..30, name, encode_name: WNID}``."""
    return [dict(id=i, name=n, encode_name=w) for i, (n, w) in enumerate(zip(VID_CLASSES, VID_WNIDS), 1)]


def det_categories() -> list[dict]:
    """The 30 VID categories plus ``{id: 31, name: 'other_categeries', encode_name: None}``."""
    return vid_categories() + [dict(id=len(VID_WNIDS) + 1, name=DET_OTHER_CATEGORY, encode_name=None)]


def _box(xml_path: Path, xml: XmlAnnotation, obj: XmlObject, index: int) -> tuple[int, int, int, int]:
    """The object's (xmin, ymin, xmax, ymax); DatasetError naming the XML and the object if it cannot be a box."""
    where = f"{xml_path}: <object> #{index} ({obj.name})"
    if obj.bbox is None:
        raise DatasetError(f"{where} has no <bndbox>")
    x1, y1, x2, y2 = obj.bbox
    if x1 > x2 or y1 > y2:
        raise DatasetError(
            f"{where}: impossible box, xmin {x1} > xmax {x2}"
            if x1 > x2
            else f"{where}: impossible box, ymin {y1} > ymax {y2}"
        )
    if min(x1, y1) < 0:
        raise DatasetError(f"{where}: impossible box, negative coordinate in {list(obj.bbox)}")
    if x2 > xml.width + BOX_TOLERANCE or y2 > xml.height + BOX_TOLERANCE:
        raise DatasetError(f"{where}: box {list(obj.bbox)} lies outside the {xml.width}x{xml.height} image")
    return obj.bbox


def _parse_xml(xml_path: Path) -> XmlAnnotation:
    """`parse_xml`, and a DatasetError naming the file for an impossible image size."""
    xml = parse_xml(xml_path)
    if xml.width <= 0 or xml.height <= 0:
        raise DatasetError(f"{xml_path}: impossible image size {xml.width}x{xml.height} in <size>")
    return xml


def _vid_field(xml_path: Path, obj: XmlObject, index: int, tag: str) -> str:
    value = getattr(obj, tag)
    if value is None:
        raise DatasetError(f"{xml_path}: <object> #{index} ({obj.name}) has no <{tag}>")
    return value


def _check_image(path: Path) -> None:
    if not path.is_file():
        raise DatasetError(f"{path}: image file is missing")


def convert_vid(root: Path, mode: str, check_images: bool = True, progress: bool = True) -> dict:
    """Build ``imagenet_vid_<mode>.json`` (mode 'train' or 'val') from ``root`` as mmtracking's converter does."""
    if mode not in VID_OUTPUTS:
        raise ValueError(f"mode must be 'train' or 'val', got {mode!r}")
    root = Path(root)
    list_path = root / (VID_TRAIN_LIST if mode == "train" else VID_VAL_LIST)
    videos = parse_vid_train_list(list_path) if mode == "train" else parse_vid_val_list(list_path)
    out: dict = {"categories": vid_categories(), "videos": [], "images": [], "annotations": []}
    img_id = ann_id = instance_id = 1
    for vid_id, entry in enumerate(tqdm(videos, desc=f"VID {mode}", unit="video", disable=not progress), 1):
        if entry.num_frames <= 0:
            raise DatasetError(f"{list_path}: video {entry.name} has {entry.num_frames} frames")
        out["videos"].append(dict(id=vid_id, name=entry.name, vid_train_frames=entry.train_frames))
        train_frames = set(entry.train_frames)
        instance_ids: dict[str, int] = {}
        for frame_id in range(entry.num_frames):
            prefix = f"{entry.name}/{frame_id:06d}"
            xml_path = root / "Annotations" / "VID" / f"{prefix}.xml"
            xml = _parse_xml(xml_path)
            if check_images:
                _check_image(root / "Data" / "VID" / f"{prefix}.JPEG")
            out["images"].append(
                dict(
                    file_name=f"{prefix}.JPEG",
                    height=xml.height,
                    width=xml.width,
                    id=img_id,
                    frame_id=frame_id,
                    video_id=vid_id,
                    is_vid_train_frame=frame_id in train_frames,
                )
            )
            for i, obj in enumerate(xml.objects):
                category_id = _CATEGORY_ID.get(obj.name)
                if category_id is None:
                    continue
                x1, y1, x2, y2 = _box(xml_path, xml, obj, i)
                trackid = _vid_field(xml_path, obj, i, "trackid")
                occluded = _vid_field(xml_path, obj, i, "occluded")
                generated = _vid_field(xml_path, obj, i, "generated")
                if trackid not in instance_ids:
                    instance_ids[trackid] = instance_id
                    instance_id += 1
                w, h = x2 - x1, y2 - y1
                out["annotations"].append(
                    dict(
                        id=ann_id,
                        video_id=vid_id,
                        image_id=img_id,
                        category_id=category_id,
                        instance_id=instance_ids[trackid],
                        bbox=[x1, y1, w, h],
                        area=w * h,
                        iscrowd=False,
                        occluded=occluded == "1",
                        generated=generated == "1",
                    )
                )
                ann_id += 1
            img_id += 1
    log.info("VID %s: %d videos, %d images, %d objects", mode, len(out["videos"]), img_id - 1, ann_id - 1)
    return out


def _det_xml_paths(root: Path) -> list[tuple[str, Path]]:
    """(image name with .JPEG, xml path) of every DET train XML, subsets in mmtracking's order, each sorted."""
    found = []
    for subset in DET_SUBSETS:
        base = root / "Annotations" / "DET" / subset
        pattern = (
            os.path.join(glob.escape(str(base)), "*", "*.xml")
            if subset.endswith("2013_train")
            else os.path.join(glob.escape(str(base)), "*.xml")
        )
        for xml_path in sorted(glob.glob(pattern)):
            rel = Path(xml_path).relative_to(base).as_posix()
            found.append((f"{subset}/{rel[: -len('.xml')]}.JPEG", Path(xml_path)))
    return found


def convert_det(root: Path, check_images: bool = True, progress: bool = True) -> dict:
    """Build ``imagenet_det_30plus1cls.json``: listed images first (is_vid_train_frame=True), then the rest."""
    root = Path(root)
    listed = [f"{name}.JPEG" for name in parse_det_train_list(root / DET_TRAIN_LIST)]
    listed_set = set(listed)
    work = [(name, root / "Annotations" / "DET" / f"{name[: -len('.JPEG')]}.xml", True) for name in listed]
    work += [(name, path, False) for name, path in _det_xml_paths(root) if name not in listed_set]
    out: dict = {"categories": det_categories(), "images": [], "annotations": []}
    other_id = len(VID_WNIDS) + 1
    ann_id = 1
    for img_id, (name, xml_path, is_train) in enumerate(tqdm(work, desc="DET", unit="image", disable=not progress), 1):
        xml = _parse_xml(xml_path)
        if check_images:
            _check_image(root / "Data" / "DET" / name)
        out["images"].append(
            dict(file_name=name, height=xml.height, width=xml.width, id=img_id, is_vid_train_frame=is_train)
        )
        for i, obj in enumerate(xml.objects):
            x1, y1, x2, y2 = _box(xml_path, xml, obj, i)
            w, h = x2 - x1, y2 - y1
            out["annotations"].append(
                dict(
                    id=ann_id,
                    image_id=img_id,
                    category_id=_CATEGORY_ID.get(obj.name, other_id),
                    bbox=[x1, y1, w, h],
                    area=w * h,
                    iscrowd=False,
                )
            )
            ann_id += 1
    log.info("DET: %d images (%d listed), %d objects", len(work), len(listed), ann_id - 1)
    return out


def convert_dataset(
    root: Path,
    out_dir: Path | None = None,
    parts: tuple[str, ...] = ("vid_train", "vid_val", "det"),
    check_images: bool = True,
    progress: bool = True,
) -> list[Path]:
    """Convert the requested parts of an ILSVRC2015 root; returns the JSON paths written (default ``root/annotations``).

    Each JSON is built fully in memory before it is written, so an error leaves no partial file behind.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: ILSVRC root folder does not exist")
    out_dir = Path(out_dir) if out_dir is not None else root / "annotations"
    unknown = set(parts) - {"vid_train", "vid_val", "det"}
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; choose from vid_train, vid_val, det")
    written = []
    for part in parts:
        if part == "det":
            data, name = convert_det(root, check_images, progress), DET_OUTPUT
        else:
            mode = part[len("vid_") :]
            data, name = convert_vid(root, mode, check_images, progress), VID_OUTPUTS[mode]
        write_json_atomic(data, out_dir / name)
        written.append(out_dir / name)
    return written
