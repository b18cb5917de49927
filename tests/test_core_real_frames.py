"""All three mmtracking presets end to end on real ImageNet VID frames (1280x720), golden-recipe weights."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import dff
from dff.golden import deterministic_state_dict
from tests.conftest import REAL, need


def real_frames(n: int) -> list[np.ndarray]:
    folder = need(REAL / "ILSVRC2015_val_00007010")
    paths = sorted(folder.glob("*.JPEG"))[:n]
    return [cv2.imread(str(p)) for p in paths]


@pytest.mark.parametrize(
    "preset,n",
    [
        ("r50_dc5", 3),
        pytest.param("r101_dc5", 2, marks=pytest.mark.slow),
        pytest.param("x101_dc5", 2, marks=pytest.mark.slow),
    ],
)
def test_preset_runs_on_real_frames(preset, n):
    model = dff.build(preset)
    model.net.load_state_dict(deterministic_state_dict(model.net.state_dict(), seed=1))
    shapes = {}
    model.net.detector.backbone.register_forward_hook(lambda m, a, o: shapes.__setitem__("c5", tuple(o.shape)))
    model.net.motion.register_forward_hook(lambda m, a, o: shapes.__setitem__("flow", tuple(o.shape)))
    model.net.warp.register_forward_hook(lambda m, a, o: shapes.__setitem__("warped", tuple(o.shape)))
    frames = real_frames(n)
    assert frames[0].shape == (720, 1280, 3)
    results = list(model.predict(frames, device="cpu", key_policy=dff.FixedInterval(2)))
    assert [r.is_key_frame for r in results] == [i % 2 == 0 for i in range(n)]
    assert shapes["c5"] == (1, 2048, 36, 63)
    assert shapes["flow"] == (1, 2, 576, 1008) and shapes["warped"] == (1, 512, 36, 63)
    for r in results:
        assert 0 < len(r.scores) <= 100 and np.all(np.diff(r.scores) <= 0) and r.scores.min() > 1e-4
        assert r.boxes.min() >= 0 and r.boxes[:, 0::2].max() <= 1280 + 1e-3 and r.boxes[:, 1::2].max() <= 720 + 1e-3
        assert r.labels.min() >= 0 and r.labels.max() < 30
