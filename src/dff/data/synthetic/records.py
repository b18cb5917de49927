"""What a synthetic generator run drew (boxes, track ids, speeds, camera), saved as ``synthetic_gt.json``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dff.errors import DatasetError

GT_FILE = "synthetic_gt.json"


@dataclass
class Track:
    """One object of a video: its WNID, speed class and the boxes it was annotated with, per frame."""

    trackid: int
    wnid: str
    speed: str
    frames: list[int] = field(default_factory=list)
    boxes: list[list[int]] = field(default_factory=list)  # [xmin, ymin, xmax, ymax), w = xmax - xmin, per frame
    occluded: list[bool] = field(default_factory=list)
    generated: list[bool] = field(default_factory=list)
    full_boxes: list[list[int]] = field(default_factory=list)  # the whole sprite's box, also outside the frame


@dataclass
class SyntheticVideo:
    """A generated video: ``name`` is its directory relative to ``Data/VID`` (e.g. ``val/ILSVRC2015_val_00000000``)."""

    split: str
    name: str
    width: int
    height: int
    num_frames: int
    train_frames: list[int]  # 0-based, the 15 listed in VID_train_15frames.txt (empty for val)
    tracks: list[Track]
    camera: list[list[int]] = field(default_factory=list)  # per frame: (x, y) of the frame in the panned canvas
    cuts: list[int] = field(default_factory=list)  # varied style: the first frame of every shot after the first
    zoom: list[float] = field(default_factory=list)  # varied style: the camera zoom of each frame (1: none)


@dataclass
class SyntheticImage:
    """A generated DET image; ``name`` is relative to ``Data/DET`` without ``.JPEG``."""

    name: str
    width: int
    height: int
    listed: bool  # in DET_train_30classes.txt (has an object of a VID class)
    objects: list[dict]  # {"wnid", "box": [xmin, ymin, xmax, ymax]}


@dataclass
class SyntheticSet:
    """Everything a generator run drew; written as ``synthetic_gt.json`` at the root."""

    root: Path
    seed: int
    videos: list[SyntheticVideo]
    det_images: list[SyntheticImage]

    def to_dict(self) -> dict:
        return {
            "seed": self.seed,
            "videos": [_video_dict(v) for v in self.videos],
            "det_images": [asdict(d) for d in self.det_images],
        }

    @classmethod
    def from_dict(cls, root: Path, d: dict) -> SyntheticSet:
        videos = [SyntheticVideo(**{**v, "tracks": [Track(**t) for t in v["tracks"]]}) for v in d["videos"]]
        return cls(Path(root), d["seed"], videos, [SyntheticImage(**i) for i in d["det_images"]])


def _video_dict(v: SyntheticVideo) -> dict:
    """A video's record; the varied style's fields only where they were drawn (standard records unchanged)."""
    d = asdict(v)
    for k in ("cuts", "zoom"):
        if not d[k]:
            del d[k]
    return d


def load_ground_truth(root: Path | str) -> SyntheticSet:
    """Read ``synthetic_gt.json`` of a generated tree."""
    path = Path(root) / GT_FILE
    try:
        return SyntheticSet.from_dict(Path(root), json.loads(path.read_text()))
    except FileNotFoundError:
        raise DatasetError(f"{path}: no synthetic ground truth (not made by make_synthetic?)") from None
