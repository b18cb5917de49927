"""Motion IoU of every ground-truth box, computed from the annotations (FGFA's precomputed .mat is not available).

The motion IoU of a box is its mean IoU with the same track in the other frames within +-10 frames
(`dff.data.cocovid.motion_iou`, COCO IoU without +1). A box whose track has no other box in that window has no
value there (NaN); here it gets 0, as FGFA's evaluation reads an empty entry of its .mat file, so it counts as
"fast" and is never silently dropped from every bucket.
"""

from __future__ import annotations

import math

from dff.data.cocovid import CocoVID, motion_iou

LONELY_BOX_MOTION_IOU = 0.0


def gt_motion_iou(dataset: CocoVID) -> dict[object, float]:
    """Annotation id -> motion IoU in [0, 1] for every annotation of the dataset (see the module docstring)."""
    found = motion_iou(dataset)
    out = {}
    for ann in dataset.all_annotations():
        value = found.get(ann["id"], math.nan)
        out[ann["id"]] = LONELY_BOX_MOTION_IOU if math.isnan(value) else value
    return out
