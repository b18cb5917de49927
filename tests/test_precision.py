"""Measured drift of `RunOptions(dtype="bf16" / "fp16")` from fp32: the bundled tiny model on the bundled clip.

Measured (torch 2.14.1, CPU, one thread; 60 frames of demo_clip.mp4 at 480x272, key interval 10): fp32 gives 160
detections scoring >= 0.5. Each is matched to the reduced-precision detection of the same label with the highest IoU.
- bf16: all 160 matched, IoU >= 0.826; box corners move by 0.079 px median, 2.58 px at the 99th percentile, 5.95 px
  at most (under 10 % of that box's short side); scores by 0.0007 median, 0.019 at most; one detection crosses the
  0.5 threshold (0.502 falls under it), none appear.
- fp16: all 160 matched, IoU >= 0.999; corners move by 0.031 px at most, scores by 0.0019 at most; none cross 0.5.
The bounds below leave about 2-3x margin over those numbers (other CPUs take other reduced-precision kernels).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

import dff

ASSETS = Path(dff.__file__).resolve().parent / "assets"
THR = 0.5  # dff demo's score threshold


@dataclass
class Drift:
    confident: int  # fp32 detections scoring >= THR
    unmatched: int  # of those, without a same-label reduced-precision detection at IoU >= 0.5
    min_iou: float
    box_median: float  # px, largest corner shift per matched detection
    box_max: float
    score_max: float
    crossed: int  # confident in one precision, not in the other (matched detections that cross THR, or new ones)


def predict(dtype: str) -> list[dff.FrameResult]:
    model = dff.load(ASSETS / "tiny_synthetic.safetensors", preset="tiny_synthetic")
    return list(model.predict(ASSETS / "demo_clip.mp4", device="cpu", dtype=dtype))


def drift(base: list[dff.FrameResult], other: list[dff.FrameResult]) -> Drift:
    """How far `other`'s detections are from `base`'s, frame by frame."""
    confident = unmatched = crossed = 0
    ious, shifts, scores = [], [], []
    for a, b in zip(base, other, strict=True):
        iou = box_iou(torch.from_numpy(a.boxes), torch.from_numpy(b.boxes)).numpy()
        iou = iou * (a.labels[:, None] == b.labels[None, :])
        for i in np.flatnonzero(a.scores >= THR):
            confident += 1
            j = int(iou[i].argmax()) if iou.shape[1] else -1
            if j < 0 or iou[i, j] < 0.5:
                unmatched += 1
                continue
            ious.append(iou[i, j])
            shifts.append(float(np.abs(a.boxes[i] - b.boxes[j]).max()))
            scores.append(abs(float(a.scores[i]) - float(b.scores[j])))
            crossed += int(b.scores[j] < THR)
        for j in np.flatnonzero(b.scores >= THR):
            i = int(iou[:, j].argmax()) if iou.shape[0] else -1
            crossed += int(i < 0 or iou[i, j] < 0.5 or a.scores[i] < THR)
    return Drift(confident, unmatched, min(ious), float(np.median(shifts)), max(shifts), max(scores), crossed)


@pytest.fixture(scope="module")
def fp32() -> list[dff.FrameResult]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield predict("fp32")
    torch.set_num_threads(before)


def test_bf16_drift_from_fp32(fp32, one_thread):
    d = drift(fp32, predict("bf16"))
    assert d.confident >= 100, d
    assert d.unmatched == 0 and d.min_iou >= 0.7, d
    assert d.box_median <= 0.3 and d.box_max <= 12.0, d
    assert d.score_max <= 0.05 and d.crossed <= 4, d


def test_fp16_drift_from_fp32(fp32, one_thread):
    d = drift(fp32, predict("fp16"))
    assert d.confident >= 100, d
    assert d.unmatched == 0 and d.min_iou >= 0.99, d
    assert d.box_median <= 0.05 and d.box_max <= 0.1, d
    assert d.score_max <= 0.005 and d.crossed <= 1, d


def test_the_measure_sees_a_real_change(fp32):
    """The drift measure is not blind: the same fp32 model with a key frame every 20 frames instead of 10 moves
    detections far beyond the bf16 bounds, so those bounds would catch a path that computes something else."""
    model = dff.load(ASSETS / "tiny_synthetic.safetensors", preset="tiny_synthetic")
    d = drift(fp32, list(model.predict(ASSETS / "demo_clip.mp4", device="cpu", key_policy=dff.FixedInterval(20))))
    assert d.unmatched > 0 and d.box_max > 12.0 and d.crossed > 4, d  # measured: 16, 44.0 px, 76
