"""The default (fast) path equals the reference path within the golden tolerances for R-101 and X-101.

The golden recipe's deterministic weights for every mmtracking key, saved as an mmtracking .pth and read by
`dff.load`; two golden frames resized to 320x180 with a 320x192 input scale (small enough for one thread), key
interval 2: frame 0 is a key frame, frame 1 is propagated by the flow. Only public API is used.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import dff
from dff.config import PreprocessConfig
from dff.golden import deterministic_state_dict
from dff.models.detector import DFF
from dff.run import REFERENCE, RunOptions
from tests.conftest import GOLDEN

SIZE = (320, 180)  # (W, H) of the resized golden frames


def small_model(preset: str, folder: Path) -> dff.DFFModel:
    """The preset at a 320x192 input, loaded through dff.load from an mmtracking .pth of golden-recipe weights."""
    cfg = replace(dff.preset(preset), preprocess=PreprocessConfig(scale=(SIZE[0], 192)))
    template = DFF(cfg).state_dict()
    ckpt = folder / f"{preset}_seed0.pth"
    torch.save({"state_dict": deterministic_state_dict(template, 0), "meta": {"CLASSES": list(cfg.class_names)}}, ckpt)
    return dff.load(ckpt, preset=cfg, device="cpu")


def same_detections(fast: dff.FrameResult, ref: dff.FrameResult, what: str) -> None:
    """Every reference top-20 detection (and >= 95 of its top 100) has a same-label fast one within 0.05 px / 1e-4."""
    ours = np.concatenate([fast.boxes, fast.scores[:, None]], axis=1).astype(np.float64)

    def found(i: int) -> bool:
        same = fast.labels == ref.labels[i]
        box = np.abs(ours[:, :4] - ref.boxes[i].astype(np.float64)).max(axis=1) <= 0.05
        score = np.abs(ours[:, 4] - float(ref.scores[i])) <= 1e-4
        return bool((same & box & score).any())

    hits = [found(i) for i in range(len(ref.scores))]
    assert all(hits[:20]), f"{what}: reference top-20 rows without a match: {[i for i in range(20) if not hits[i]]}"
    assert sum(hits[:100]) >= min(95, len(hits)), f"{what}: only {sum(hits)} of {len(hits)} detections matched"


@pytest.mark.parametrize("preset", ["r101_dc5", "x101_dc5"])
def test_fast_equals_reference(preset: str, tmp_path: Path, one_thread):
    frames = [
        cv2.resize(cv2.imread(str(GOLDEN / "frames_seed0" / f"00000{i}.png")), SIZE, interpolation=cv2.INTER_AREA)
        for i in (0, 1)
    ]
    model = small_model(preset, tmp_path)
    policy = dff.FixedInterval(2)
    ref = list(model.predict(frames, REFERENCE, key_policy=policy))
    fast = list(model.predict(frames, RunOptions(device="cpu", key_policy=policy)))
    assert [r.is_key_frame for r in ref] == [r.is_key_frame for r in fast] == [True, False]
    for i, (f, r) in enumerate(zip(fast, ref)):
        assert len(r.scores) >= 20, f"{preset} frame {i}: only {len(r.scores)} reference detections"
        same_detections(f, r, f"{preset} frame {i}")
