"""The exact optical flow between two frames of a generated video, from its ground truth."""

from __future__ import annotations

import numpy as np

from dff.data.synthetic.records import SyntheticVideo
from dff.errors import DatasetError


def ground_truth_flow(video: SyntheticVideo, t: int, k: int) -> np.ndarray:
    """Flow (2, H, W) float32 from frame ``t`` to frame ``k`` of a generated video: where each pixel of frame t is
    in frame k, in pixels (x, y).

    The background moves with the camera. An object annotated in both frames maps its box in t onto its box in k
    (its sprite is drawn scaled into that box), pixel centres to pixel centres. The background the object has
    uncovered since frame k takes the object's mapping too: its true flow would point at the object in frame k,
    and warping features along it would copy the object to where it no longer is; along the object's motion it
    reads the background behind it instead (where objects overlapped in frame k, along the top one's motion).
    Later-drawn objects are on top. Needs a set made with camera records.
    """
    if video.cuts or any(z != 1.0 for z in video.zoom):
        raise DatasetError(f"{video.name}: a varied video (shot cuts, zoom) has no exact flow here")
    if not video.camera:
        raise DatasetError(f"{video.name}: no camera record (made by an older make_synthetic); generate it again")
    h, w = video.height, video.width
    bg = np.subtract(video.camera[t], video.camera[k]).astype(np.float32)
    flow = np.empty((2, h, w), np.float32)
    flow[0], flow[1] = bg[0], bg[1]
    xs, ys = np.arange(w, dtype=np.float32) + 0.5, np.arange(h, dtype=np.float32) + 0.5
    pairs = []
    for tr in sorted(video.tracks, key=lambda tr: tr.trackid):
        at = dict(zip(tr.frames, tr.full_boxes))
        if t in at and k in at:
            pairs.append((np.asarray(at[t], np.float32), np.asarray(at[k], np.float32)))

    def paint(bt: np.ndarray, bk: np.ndarray, region: np.ndarray) -> None:
        x1, y1, x2, y2 = np.clip(np.round(region), 0, [w, h, w, h]).astype(int)
        if x2 <= x1 or y2 <= y1:
            return
        sx, sy = (bk[2] - bk[0]) / (bt[2] - bt[0]), (bk[3] - bk[1]) / (bt[3] - bt[1])
        flow[0, y1:y2, x1:x2] = (bk[0] + (xs[x1:x2] - bt[0]) * sx - xs[x1:x2])[None, :]
        flow[1, y1:y2, x1:x2] = (bk[1] + (ys[y1:y2] - bt[1]) * sy - ys[y1:y2])[:, None]

    for bt, bk in pairs:  # uncovered background: frame-t pixels whose background in frame k lies under the object
        paint(bt, bk, bk - np.tile(bg, 2))
    for bt, bk in pairs:
        paint(bt, bk, bt)
    return flow
