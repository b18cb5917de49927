"""The key-frame schedule lives in the video loop: FixedInterval is mmtracking's rule, and a policy can decide
before a frame or from what its propagation computed, saying why."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import pytest
import torch

import dff
from dff.errors import DFFError
from dff.keyframes import CUT, FIRST, INTERVAL, Adaptive, FixedInterval, Incoming, Propagated
from dff.run import REFERENCE, RunOptions


def _frames(n: int, size=(96, 160)) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (*size, 3), dtype=np.uint8) for _ in range(n)]


def test_fixed_interval_is_mmtracking_rule_per_segment():
    model = dff.build("tiny_synthetic")
    run = RunOptions(key_policy=FixedInterval(3))
    frames = _frames(5) + _frames(4, size=(80, 128))  # a size change starts a new segment
    out = list(model.predict(frames, run))
    assert [r.key_reason for r in out] == [FIRST, None, None, INTERVAL, None, FIRST, None, None, INTERVAL]
    assert [r.is_key_frame for r in out] == [r.key_reason is not None for r in out]
    assert [r.key_index for r in out] == [0, 0, 0, 3, 3, 5, 5, 5, 8]
    assert run.key_policy == FixedInterval(3) and not hasattr(model, "key_policy")  # a run is a value


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

    def before(self, frame: Incoming) -> str | None:
        assert frame.img.shape[-2:] == frame.img_shape == (192, 320)  # the tiny preset resizes to 320x192
        return None

    def after(self, frame: Propagated) -> str | None:
        assert frame.flow is not None and frame.flow.shape[-2:] == frame.img.shape[-2:]
        assert frame.feats.shape == frame.key.feats.shape
        peak = float(frame.flow.abs().max())
        self.seen.append((frame.frame_id, frame.since_key, peak))
        return "motion" if peak > self.limit else None

    def key_frame(self, frame: Incoming, reason: str) -> None:
        self.keys.append((frame.frame_id, reason))


@pytest.mark.parametrize("run", [RunOptions(device="cpu"), REFERENCE], ids=["fast", "reference"])
def test_a_policy_decides_from_the_propagated_flow(run):
    torch.manual_seed(0)
    model = dff.build("tiny_synthetic")
    frames = _frames(6)
    plain = list(model.predict(frames, run, key_policy=FlowLimit(limit=float("inf")), return_flow=True))
    assert [r.is_key_frame for r in plain] == [True] + [False] * 5
    policy = FlowLimit(limit=-1.0)  # every propagated frame is judged too far: each one becomes a key
    keyed = list(model.predict(frames, run, key_policy=policy))
    assert [r.key_reason for r in keyed] == [FIRST] + ["motion"] * 5
    assert policy.seen == [] and policy.keys == []  # the loop works on its own copy
    session = model.session(run.with_options(key_policy=policy))
    for inp in model.inputs(frames, run):
        session.step(inp)
    assert session.policy.keys == [(0, FIRST)] + [(i, "motion") for i in range(1, 6)]
    assert [s[:2] for s in session.policy.seen] == [(i, 1) for i in range(1, 6)]
    # a frame redone as a key frame gets exactly the detections of a key frame
    per_frame = list(model.predict(frames, run, key_policy=FixedInterval(1)))
    for a, b in zip(per_frame, keyed):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.scores, b.scores)


def _moving_scene(n: int, seed: int, speed: float, size=(96, 160)) -> list[np.ndarray]:
    """A smooth background of its own palette panning at `speed` pixels per frame, a square crossing it (like
    footage: colours vary over tens of pixels, not from pixel to pixel)."""
    rng = np.random.default_rng(seed)
    h, w = size
    low = rng.integers(0, 128, 3)
    coarse = (low + rng.integers(0, 128, (h // 16 + 1, w * 4 // 16 + 1, 3))).astype(np.float32)
    base = cv2.resize(coarse, (w * 4 + 16, h + 16), interpolation=cv2.INTER_CUBIC)[:h, : w * 4]
    base = np.clip(base, 0, 255).astype(np.uint8)
    colour = rng.integers(0, 255, 3)
    frames = []
    for t in range(n):
        x0 = int(t * speed) % (w * 3)
        frame = base[:, x0 : x0 + w].copy()
        s = int(t * 2 * speed) % w
        frame[30:60, s : s + 30] = colour
        frames.append(frame)
    return frames


@pytest.mark.parametrize(
    "bad",
    [dict(budget=0.5), dict(budget=10, min_interval=5, max_interval=3), dict(min_interval=0), dict(cut_threshold=0)],
)
def test_adaptive_refuses_bad_settings(bad):
    with pytest.raises(DFFError):
        Adaptive(**bad)


def test_adaptive_keeps_the_budget_and_keys_every_cut():
    """Calm, fast and static stretches and two cuts: the key frames number frames / budget (within 5 %), every
    cut's first frame is a key frame, and no gap exceeds max_interval. (Where the key frames fall within the
    budget is measured on the synthetic val sets: BENCHMARKS.md.)"""
    torch.manual_seed(0)
    model = dff.build("tiny_synthetic")
    calm = _moving_scene(200, seed=1, speed=0.5)
    fast = _moving_scene(200, seed=2, speed=6.0)
    still = [calm[0]] * 200
    frames = calm + fast + still
    policy = Adaptive(budget=10)
    out = list(model.predict(frames, device="cpu", key_policy=policy))
    keys = [r.frame_index for r in out if r.is_key_frame]
    assert abs(len(keys) - len(frames) / 10) <= 0.05 * len(frames) / 10, len(keys)
    assert out[200].key_reason == CUT and out[400].key_reason == CUT
    assert sum(1 for r in out if r.key_reason == CUT) == 2
    gaps = np.diff(keys)
    assert gaps.max() <= policy.max_interval


def test_signals_measure_the_flow_error_and_new_content():
    from dff.keyframes.signals import (
        colour_histogram,
        displacement,
        histogram_distance,
        outside_share,
        thumbnail,
        warp_residual,
    )

    g = torch.Generator().manual_seed(0)
    img = torch.randn(1, 3, 192, 320, generator=g)
    small, valid = thumbnail(img, (180, 320))  # the bottom 12 rows are padding
    assert small.shape == (1, 3, 24, 40) and int(valid.sum()) == 23 * 40
    key = torch.roll(img, shifts=16, dims=3)  # the key frame sees the scene 16 px further right
    key_small, _ = thumbnail(key, (180, 320))
    flow = torch.zeros(1, 2, 192, 320)
    flow[:, 0] = 16.0
    right, wrong = (warp_residual(small, key_small, f, valid) for f in (flow, torch.zeros_like(flow)))
    assert right < 1e-6 < 0.1 < wrong
    assert outside_share(torch.zeros_like(flow), valid) == 0.0
    assert outside_share(flow, valid) == pytest.approx(2 / 40)  # the last two columns map past the key's edge
    assert displacement(flow, valid) == pytest.approx(2 / 40)  # 16 px = 2 cells of a 40-cell-wide thumbnail
    hist = colour_histogram(small, valid)
    assert float(hist.sum()) == pytest.approx(1.0)
    assert histogram_distance(hist, colour_histogram(key_small, valid)) < 0.2
    assert histogram_distance(hist, colour_histogram(small + 3.0, valid)) > 0.9
