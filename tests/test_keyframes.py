"""The key-frame schedule lives in the video loop: FixedInterval is mmtracking's rule, and a policy can decide
before a frame or from what its propagation computed, saying why."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

import dff
from dff.api import REFERENCE, InferenceOptions
from dff.errors import DFFError
from dff.keyframes import FIRST, INTERVAL, FixedInterval, Propagated


def _frames(n: int, size=(96, 160)) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (*size, 3), dtype=np.uint8) for _ in range(n)]


def test_fixed_interval_is_mmtracking_rule_per_segment():
    model = dff.build("tiny_synthetic")
    model.key_interval = 3
    frames = _frames(5) + _frames(4, size=(80, 128))  # a size change starts a new segment
    out = list(model.predict(frames))
    assert [r.key_reason for r in out] == [FIRST, None, None, INTERVAL, None, FIRST, None, None, INTERVAL]
    assert [r.is_key_frame for r in out] == [r.key_reason is not None for r in out]
    assert model.key_interval == 3 and model.key_policy == FixedInterval(3)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "3"])
def test_fixed_interval_refuses_bad_values(bad):
    with pytest.raises(DFFError, match="key interval"):
        FixedInterval(bad)


@dataclass
class FlowLimit:
    """A test policy: a key frame once the flow's largest displacement exceeds `limit` pixels."""

    limit: float
    seen: list = field(default_factory=list)
    keys: list = field(default_factory=list)

    def reset(self) -> None:
        self.seen.clear()

    def before(self, frame_id: int, img: torch.Tensor) -> str | None:
        return None

    def after(self, frame: Propagated) -> str | None:
        assert frame.flow is not None and frame.flow.shape[-2:] == frame.img.shape[-2:]
        assert frame.feats.shape == frame.key.feats.shape
        peak = float(frame.flow.abs().max())
        self.seen.append((frame.frame_id, frame.since_key, peak))
        return "motion" if peak > self.limit else None

    def key_frame(self, frame_id: int, img: torch.Tensor, reason: str) -> None:
        self.keys.append((frame_id, reason))


@pytest.mark.parametrize("options", [InferenceOptions(), REFERENCE], ids=["fast", "reference"])
def test_a_policy_decides_from_the_propagated_flow(options):
    torch.manual_seed(0)
    model = dff.build("tiny_synthetic")
    model.inference = options
    frames = _frames(6)
    model.key_policy = FlowLimit(limit=float("inf"))
    plain = list(model.predict(frames, return_flow=True))
    assert [r.is_key_frame for r in plain] == [True] + [False] * 5
    model.key_policy = FlowLimit(limit=-1.0)  # every propagated frame is judged too far: each one becomes a key
    keyed = list(model.predict(frames))
    assert [r.key_reason for r in keyed] == [FIRST] + ["motion"] * 5
    assert model.key_policy.seen == [] and model.key_policy.keys == []  # the loop works on its own copy
    session = model.session()
    for inp in model.inputs(frames):
        session.step(inp)
    assert session.policy.keys == [(0, FIRST)] + [(i, "motion") for i in range(1, 6)]
    assert [s[:2] for s in session.policy.seen] == [(i, 1) for i in range(1, 6)]
    # a frame redone as a key frame gets exactly the detections of a key frame
    model.key_interval = 1
    per_frame = list(model.predict(frames))
    for a, b in zip(per_frame, keyed):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.scores, b.scores)
