"""MOTChallenge sequence (``seqinfo.ini`` + ``gt/gt.txt``) -> :class:`~dff.data.formats.common.SourceVideo`.

``gt.txt`` has one box per line, nine comma-separated columns::

    frame, id, bb_left, bb_top, width, height, active, class, visibility

read as mmtracking's ``mot2coco.py`` reads them: frame ``f`` (1-based) is ``frame_id f - 1``, the box is
``[bb_left, bb_top, width, height]`` as is, ``id`` is the track (one instance per id), a line with
``active`` 0 (not evaluated in MOTChallenge) is left out, and ``visibility`` is kept as a field;
``occluded`` is ``visibility < OCCLUDED_VISIBILITY``. MOT has no interpolation flag: ``generated`` is false.
Class ``k`` is the ``k``-th name of a names file, or MOT17's class table without one.
"""

from __future__ import annotations

import configparser
import math
from pathlib import Path

from dff.data.files import read_text
from dff.data.formats.common import MAX_FRAMES, SourceBox, SourceVideo
from dff.errors import DatasetError

MOT17_CLASSES: tuple[str, ...] = (
    "pedestrian",
    "person_on_vehicle",
    "car",
    "bicycle",
    "motorbike",
    "non_motorized_vehicle",
    "static_person",
    "distractor",
    "occluder",
    "occluder_on_the_ground",
    "occluder_full",
    "reflection",
    "crowd",
)
"""MOT17/MOT20's classes 1..13 (MOT20 adds ``crowd``)."""

OCCLUDED_VISIBILITY = 0.8
"""A box less visible than this (more than 20% hidden) is ``occluded``, the synthetic generator's rule."""

COLUMNS = "frame, id, bb_left, bb_top, width, height, active, class, visibility"


def _seqinfo(seq: Path) -> tuple[str, str, str, int, int, int]:
    ini = seq / "seqinfo.ini"
    text = read_text(ini, "seqinfo.ini")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=str(ini))
    except configparser.Error as e:
        raise DatasetError(f"{ini}: malformed seqinfo.ini ({e.message.splitlines()[0]})") from None
    if "Sequence" not in parser:
        raise DatasetError(f"{ini}: has no [Sequence] section")
    s = parser["Sequence"]
    missing = [k for k in ("imDir", "seqLength", "imWidth", "imHeight", "imExt") if k not in s]
    if missing:
        raise DatasetError(f"{ini}: [Sequence] lacks {', '.join(missing)}")
    try:
        length, width, height = int(s["seqLength"]), int(s["imWidth"]), int(s["imHeight"])
    except ValueError:
        raise DatasetError(f"{ini}: seqLength, imWidth and imHeight must be whole numbers") from None
    if min(length, width, height) < 1:
        raise DatasetError(f"{ini}: seqLength {length}, imWidth {width}, imHeight {height} must be positive")
    if length > MAX_FRAMES:
        raise DatasetError(f"{ini}: seqLength {length} is more than {MAX_FRAMES} frames")
    return s.get("name", seq.name), s["imDir"], s["imExt"], length, width, height


def read_mot(seq_dir: Path | str, class_names: list[str] | None = None) -> SourceVideo:
    """Read one sequence folder; file names are ``<folder>/<imDir>/<%06d frame><imExt>`` (1-based, MOT's own).

    Without ``class_names`` the classes are MOT17's that occur in the file, in class-number order.
    """
    seq = Path(seq_dir)
    if seq.name == "gt.txt":
        seq = seq.parent.parent
    name, im_dir, im_ext, length, width, height = _seqinfo(seq)
    gt = seq / "gt" / "gt.txt"
    lines = read_text(gt, "the ground truth").splitlines()
    table = list(class_names) if class_names is not None else list(MOT17_CLASSES)
    rows = []
    seen: dict[tuple[int, int], int] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        cols = [c.strip() for c in line.split(",")]
        if len(cols) != 9:
            raise DatasetError(f"{gt}: line {n} has {len(cols)} columns, want 9 ({COLUMNS})")
        try:
            values = [float(c) for c in cols]
        except ValueError:
            raise DatasetError(f"{gt}: line {n} has a value that is not a number: {line.strip()!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise DatasetError(f"{gt}: line {n} has a value that is not finite: {line.strip()!r}")
        frame, track, cls = int(values[0]), int(values[1]), int(values[7])
        left, top, w, h, active, vis = values[2:7] + values[8:9]
        if w < 0 or h < 0:
            raise DatasetError(f"{gt}: line {n}: negative box size {w:g}x{h:g}")
        if not 1 <= frame <= length:
            raise DatasetError(f"{gt}: line {n}: frame {frame} is outside 1..{length} (seqLength)")
        if (frame, track) in seen:
            raise DatasetError(f"{gt}: line {n}: id {track} is already on frame {frame} (line {seen[frame, track]})")
        seen[frame, track] = n
        if active == 0:
            continue
        if not 1 <= cls <= len(table):
            raise DatasetError(f"{gt}: line {n}: class {cls} is outside 1..{len(table)} (the class names)")
        rows.append((frame - 1, track, table[cls - 1], (left, top, left + w, top + h), vis))
    ranks = {t: r for r, t in enumerate(sorted({row[1] for row in rows}))}
    if class_names is None:
        used = {row[2] for row in rows}
        table = [c for c in table if c in used]
    file_names = [f"{seq.name}/{im_dir}/{f:06d}{im_ext}" for f in range(1, length + 1)]
    video = SourceVideo(name, gt, file_names, [(width, height)] * length, table)
    video.boxes = [
        SourceBox(f, ranks[t], label, box, vis < OCCLUDED_VISIBILITY, False, (("visibility", vis),))
        for f, t, label, box, vis in rows
    ]
    return video
