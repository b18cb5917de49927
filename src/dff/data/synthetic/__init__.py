"""A synthetic ImageNet VID/DET set in the exact ILSVRC2015 layout, learnable and with motion that matters.

``make_synthetic(out)`` writes::

    Data/VID/{train,val}/<video>/<%06d>.JPEG        Annotations/VID/{train,val}/<video>/<%06d>.xml
    Data/DET/train/<subset>/<image>.JPEG            Annotations/DET/train/<subset>/<image>.xml
    Lists/VID_train_15frames.txt  Lists/VID_val_videos.txt  Lists/DET_train_30classes.txt
    synthetic_gt.json                               (what was drawn: every box, track id and speed)

Content: eight VID classes, each a distinct shape and texture (:data:`SYNTHETIC_CLASSES`), over a textured
background seen through a panning camera. Every object gets a speed class -- slow, medium or fast, a
per-frame displacement of a fixed fraction of its size -- so that FGFA's motion-IoU buckets (fast < 0.7,
medium 0.7-0.9, slow > 0.9) are all populated; objects also change scale, bounce or leave the frame, enter
mid-video, and pass behind an unannotated pole (``occluded`` is set when more than 20% is hidden). Boxes are
integer ``xmin, ymin, xmax, ymax`` with ``w = xmax - xmin`` (mmtracking's reading) of the visible part.

Deterministic per seed: video ``i`` of a split depends only on ``(seed, split, i)`` and the frame size.

Modules: `render` (sprites, backgrounds, motion; no files), `flow` (the exact flow between two frames),
`ilsvrc` (the writer: frames, XML, lists) and `records` (what was drawn, ``synthetic_gt.json``).
"""

from dff.data.synthetic.flow import ground_truth_flow
from dff.data.synthetic.ilsvrc import OTHER_WNID, STYLES, make_synthetic, train_frame_numbers
from dff.data.synthetic.records import GT_FILE, SyntheticImage, SyntheticSet, SyntheticVideo, Track, load_ground_truth
from dff.data.synthetic.render import SCALE_RATES, SPEED_FRACTIONS, SYNTHETIC_CLASSES, make_background, make_sprite

__all__ = [
    "GT_FILE",
    "OTHER_WNID",
    "SCALE_RATES",
    "STYLES",
    "SPEED_FRACTIONS",
    "SYNTHETIC_CLASSES",
    "SyntheticImage",
    "SyntheticSet",
    "SyntheticVideo",
    "Track",
    "ground_truth_flow",
    "load_ground_truth",
    "make_background",
    "make_sprite",
    "make_synthetic",
    "train_frame_numbers",
]
