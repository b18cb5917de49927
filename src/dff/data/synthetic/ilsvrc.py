"""The ILSVRC2015 writer of the synthetic set: JPEG frames, VOC XML annotations, the list files and the ground truth.

See `dff.data.synthetic` for the layout it writes.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from dff.classes import VID_CLASSES, VID_WNIDS
from dff.data.synthetic.records import GT_FILE, SyntheticImage, SyntheticSet, SyntheticVideo, Track
from dff.data.synthetic.render import VARIED, render_det_image, render_video
from dff.errors import DatasetError, InputError
from dff.io.atomic import write_text_atomic

log = logging.getLogger(__name__)

OTHER_WNID = "n00007846"
"""A non-VID WNID (person) used for DET distractors; the DET converter maps it to category 31."""

_SPLIT_CODE = {"train": 0, "val": 1, "det": 2}

_WNID = dict(zip(VID_CLASSES, VID_WNIDS)) | {"other": OTHER_WNID}


def _xml_object(wnid: str, box, extra: str = "", track: str = "") -> str:
    x1, y1, x2, y2 = box
    return (
        f"\t<object>\n{track}\t\t<name>{wnid}</name>\n\t\t<bndbox>\n\t\t\t<xmax>{x2}</xmax>\n"
        f"\t\t\t<xmin>{x1}</xmin>\n\t\t\t<ymax>{y2}</ymax>\n\t\t\t<ymin>{y1}</ymin>\n\t\t</bndbox>\n"
        f"{extra}\t</object>\n"
    )


def _xml(folder: str, filename: str, database: str, width: int, height: int, objects: list[str]) -> str:
    return (
        f"<annotation>\n\t<folder>{folder}</folder>\n\t<filename>{filename}</filename>\n"
        f"\t<source>\n\t\t<database>{database}</database>\n\t</source>\n"
        f"\t<size>\n\t\t<width>{width}</width>\n\t\t<height>{height}</height>\n\t</size>\n"
        + "".join(objects)
        + "</annotation>\n"
    )


def _write_image(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 92]):
        raise DatasetError(f"{path}: cannot write image")


def train_frame_numbers(num_frames: int) -> list[int]:
    """The 1-based frames FGFA lists for a training video: the centres of 15 equal segments (all if shorter)."""
    if num_frames <= 15:
        return list(range(1, num_frames + 1))
    return [max(1, (2 * k + 1) * num_frames // 30) for k in range(15)]


def _video_name(split: str, index: int) -> str:
    if split == "train":
        return f"train/ILSVRC2015_VID_train_{index // 1000:04d}/ILSVRC2015_train_{index:08d}"
    return f"val/ILSVRC2015_val_{index:08d}"


STYLES = ("standard", "varied")
"""`standard`: one shot per video (the set the bundled model was trained and measured on). `varied`: closer to
real footage: 1 to 3 shots per video (shot cuts), stop-and-go motion, faster pans, camera zoom, more objects
entering at the borders (render.VARIED)."""


def _shots(rng: np.random.Generator, num_frames: int) -> list[int]:
    """Lengths of the shots of a varied video: 1 to 3 shots of at least 12 frames each."""
    n = min(int(rng.integers(1, 4)), max(1, num_frames // 12))
    if n == 1:
        return [num_frames]
    cuts = sorted(int(c) for c in rng.choice(np.arange(12, num_frames - 11), size=n - 1, replace=False))
    while any(b - a < 12 for a, b in zip([0, *cuts], [*cuts, num_frames])):
        cuts = sorted(int(c) for c in rng.choice(np.arange(12, num_frames - 11), size=n - 1, replace=False))
    return [b - a for a, b in zip([0, *cuts], [*cuts, num_frames])]


def _render(rng: np.random.Generator, width: int, height: int, num_frames: int, style: str):
    """The frames of one video: one standard shot, or a varied video's shots one after another (track ids made
    unique per shot). Yields (shot index, then what render_video yields)."""
    if style == "standard":
        for out in render_video(rng, width, height, num_frames):
            yield 0, *out
        return
    for shot, length in enumerate(_shots(rng, num_frames)):
        for frame, objects, cam, zoom in render_video(rng, width, height, length, VARIED):
            yield shot, frame, [(100 * shot + o[0], *o[1:]) for o in objects], cam, zoom


def _make_video(
    root: Path, split: str, index: int, seed: int, width: int, height: int, num_frames: int, style: str = "standard"
) -> SyntheticVideo:
    key = [seed, _SPLIT_CODE[split], index] + ([] if style == "standard" else [STYLES.index(style)])
    rng = np.random.default_rng(key)
    name = _video_name(split, index)
    tracks: dict[int, Track] = {}
    camera, zooms, cuts = [], [], []
    for t, (shot, frame, objects, cam, zoom) in enumerate(_render(rng, width, height, num_frames, style)):
        _write_image(root / "Data" / "VID" / name / f"{t:06d}.JPEG", frame)
        camera.append(list(cam))
        zooms.append(zoom)
        if t and shot != len(cuts):
            cuts.append(t)
        parts = []
        for trackid, kind, speed, box, occluded, full_box in objects:
            generated = bool(rng.random() < 0.3)
            tr = tracks.setdefault(trackid, Track(trackid, _WNID[kind], speed))
            tr.frames.append(t)
            tr.boxes.append(list(box))
            tr.occluded.append(occluded)
            tr.generated.append(generated)
            tr.full_boxes.append(list(full_box))
            parts.append(
                _xml_object(
                    _WNID[kind],
                    box,
                    track=f"\t\t<trackid>{trackid}</trackid>\n",
                    extra=f"\t\t<occluded>{int(occluded)}</occluded>\n\t\t<generated>{int(generated)}</generated>\n",
                )
            )
        xml_path = root / "Annotations" / "VID" / name / f"{t:06d}.xml"
        xml_path.parent.mkdir(parents=True, exist_ok=True)
        xml_path.write_text(_xml(name.split("/", 1)[1], f"{t:06d}", "ILSVRC_2015", width, height, parts))
    train_frames = [n - 1 for n in train_frame_numbers(num_frames)] if split == "train" else []
    varied = {"cuts": cuts, "zoom": zooms} if style != "standard" else {}
    return SyntheticVideo(
        split, name, width, height, num_frames, train_frames, [tracks[k] for k in sorted(tracks)], camera, **varied
    )


def _make_det_image(root: Path, index: int, seed: int, width: int, height: int) -> SyntheticImage:
    rng = np.random.default_rng([seed, _SPLIT_CODE["det"], index])
    img, drawn = render_det_image(rng, width, height)
    h, w = img.shape[:2]
    objects = [{"wnid": _WNID[kind], "box": list(box)} for kind, box in drawn]
    listed = any(o["wnid"] != OTHER_WNID for o in objects)
    if index % 2 == 0:
        name = f"train/ILSVRC2014_train_0000/ILSVRC2014_train_{index:08d}"
        folder, database = "ILSVRC2014_train_0000", "ILSVRC_2014"
    else:
        wnid = objects[0]["wnid"] if objects else OTHER_WNID
        name = f"train/ILSVRC2013_train/{wnid}/{wnid}_{index}"
        folder, database = wnid, "ILSVRC_2013"
    _write_image(root / "Data" / "DET" / f"{name}.JPEG", img)
    xml_path = root / "Annotations" / "DET" / f"{name}.xml"
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    xml_path.write_text(
        _xml(folder, name.rsplit("/", 1)[1], database, w, h, [_xml_object(o["wnid"], o["box"]) for o in objects])
    )
    return SyntheticImage(name, w, h, listed, objects)


def _write_lists(root: Path, videos: list[SyntheticVideo], det: list[SyntheticImage]) -> None:
    train = [v for v in videos if v.split == "train"]
    lines = [f"{v.name} 1 {n} {v.num_frames}\n" for v in train for n in train_frame_numbers(v.num_frames)]
    write_text_atomic(root / "Lists" / "VID_train_15frames.txt", "".join(lines))
    lines, start = [], 1
    for v in (v for v in videos if v.split == "val"):
        lines.append(f"{v.name} {start} 0 {v.num_frames}\n")
        start += v.num_frames
    write_text_atomic(root / "Lists" / "VID_val_videos.txt", "".join(lines))
    listed = [d.name for d in det if d.listed]
    ordered = [n for n in listed if "ILSVRC2014" in n] + sorted(n for n in listed if "ILSVRC2013" in n)
    write_text_atomic(root / "Lists" / "DET_train_30classes.txt", "".join(f"{n} 1\n" for n in ordered))


LIMITS = {
    "videos": (0, 100_000, "a set of ILSVRC's size has 4000"),
    "val_videos": (0, 100_000, "a set of ILSVRC's size has 555"),
    "frames": (1, 10_000, "frames per video"),
    "det_images": (0, 1_000_000, "ILSVRC DET has about 450000"),
    "width": (32, 4096, "pixels; ILSVRC's frames are at most 1280x720, and each is drawn in memory at 1.4x its size"),
    "height": (32, 4096, "pixels; ILSVRC's frames are at most 1280x720, and each is drawn in memory at 1.4x its size"),
    "seed": (0, 2**32 - 1, "what NumPy's and torch's generators take"),
}
"""(least, most, why) of each size option of `make_synthetic`."""
MAX_IMAGES = 2_000_000
"""Frames and DET images in all: what is drawn is also kept in memory until `synthetic_gt.json` is written."""
JPEG_BYTES_PER_PIXEL = 0.25
"""A low estimate of a written frame's size (quality 92: about 0.38 bytes per pixel measured), for the disk check."""


def _size(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def _free_bytes(root: Path) -> int:
    existing = root.expanduser().absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return shutil.disk_usage(existing).free


def check_size(
    root: Path, videos: int, frames: int, seed: int, width: int, height: int, det_images: int, val_videos: int
) -> None:
    """Raise InputError naming the option and the bound for a set that cannot be made: an option outside
    `LIMITS`, more than `MAX_IMAGES` images, or more than the free space of `root`'s disk (a low estimate)."""
    given = dict(videos=videos, val_videos=val_videos, frames=frames, det_images=det_images)
    given |= dict(width=width, height=height, seed=seed)
    for name, value in given.items():
        low, high, why = LIMITS[name]
        if not low <= value <= high:
            raise InputError(f"{root}: {name} must be in [{low}, {high}], got {value} ({why})")
    images = (videos + val_videos) * frames + det_images
    if images > MAX_IMAGES:
        raise InputError(
            f"{root}: {videos} + {val_videos} videos of {frames} frames and {det_images} DET images make {images} "
            f"images, more than {MAX_IMAGES} (what is drawn is kept in memory until the ground truth is written)"
        )
    need, free = images * width * height * JPEG_BYTES_PER_PIXEL, _free_bytes(root)
    if need > free:
        raise InputError(
            f"{root}: {images} images of {width}x{height} need about {_size(need)} or more, and the disk has "
            f"{_size(free)} free"
        )


def make_synthetic(
    out_dir: Path | str,
    videos: int = 20,
    frames: int = 60,
    seed: int = 0,
    width: int = 480,
    height: int = 272,
    det_images: int = 40,
    val_videos: int = 5,
    overwrite: bool = False,
    progress: bool = True,
    style: str = "standard",
) -> SyntheticSet:
    """Write a synthetic ILSVRC2015 tree to ``out_dir`` and return (and save) what was drawn.

    ``videos`` training videos and ``val_videos`` validation videos of ``frames`` frames of ``width`` x
    ``height`` pixels, and ``det_images`` DET still images (about the same size). Refuses a non-empty
    ``out_dir`` unless ``overwrite``, and sizes that cannot be made (`check_size`) before writing anything.
    ``style``: "standard" or "varied" videos (`STYLES`).
    """
    root = Path(out_dir)
    check_size(root, videos, frames, seed, width, height, det_images, val_videos)
    if style not in STYLES:
        raise InputError(f"{root}: unknown synthetic style {style!r}; choose from {', '.join(STYLES)}")
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise InputError(f"{root}: folder is not empty (use overwrite / --force to write into it)")
    root.mkdir(parents=True, exist_ok=True)
    jobs = [("train", i) for i in range(videos)] + [("val", i) for i in range(val_videos)]
    made = [
        _make_video(root, split, i, seed, width, height, frames, style)
        for split, i in tqdm(jobs, desc="synthetic videos", unit="video", disable=not progress)
    ]
    det = [
        _make_det_image(root, i, seed, width, height)
        for i in tqdm(range(det_images), desc="synthetic DET", unit="image", disable=not progress)
    ]
    _write_lists(root, made, det)
    result = SyntheticSet(root, seed, made, det)
    write_text_atomic(root / GT_FILE, json.dumps(result.to_dict()))
    log.info(
        "synthetic set: %d train + %d val videos of %d frames, %d DET images in %s",
        videos,
        val_videos,
        frames,
        det_images,
        root,
    )
    return result
