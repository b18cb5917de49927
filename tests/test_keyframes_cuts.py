"""Shot cuts on real footage: `../shared/data/real/videos/bikes.mp4` (250 frames, cuts at 30, 76, 137, 187, 242
per its README) with Adaptive(budget=10): the first frame of every shot (within one frame) is a key frame and the
run spends at most 30 key frames, with the bundled model and with the R-50 golden weights."""

from __future__ import annotations

import pytest
import torch

import dff
from dff.cli.demo import MODEL_PATH
from dff.golden import deterministic_state_dict
from dff.keyframes import CUT, FIRST, Adaptive
from tests.conftest import REAL, need

SHOTS = (0, 30, 76, 137, 187, 242)


def _keys(model: dff.DFFModel) -> list[tuple[int, str]]:
    bikes = need(REAL / "videos" / "bikes.mp4")
    return [
        (r.frame_index, r.key_reason) for r in model.predict(bikes, key_policy=Adaptive(budget=10)) if r.is_key_frame
    ]


def _check(keys: list[tuple[int, str]]) -> None:
    frames = {f for f, _ in keys}
    assert keys[0] == (0, FIRST)
    missed = [s for s in SHOTS if not frames & {s - 1, s, s + 1}]
    assert not missed, f"shots without a key frame at their start: {missed}; keys {keys}"
    assert len(keys) <= 30, keys


@pytest.mark.usefixtures("one_thread")
def test_bundled_model_keys_every_shot_of_bikes():
    keys = _keys(dff.load(MODEL_PATH))
    _check(keys)
    assert sum(r == CUT for _, r in keys) >= 4  # found by the histogram test itself, not only by the budget


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_r50_golden_weights_key_every_shot_of_bikes():
    model = dff.build("r50_dc5")
    model.net.load_state_dict(deterministic_state_dict(model.net.state_dict(), seed=0))
    torch.manual_seed(0)
    _check(_keys(model))
