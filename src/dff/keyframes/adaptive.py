"""`Adaptive`: key frames where the video needs them, at the long-run rate of `FixedInterval(budget)`.

Per frame (signals.py, no extra network and no training):
- before propagating, the colour histogram of the frame against the previous frame's: a shot cut always gets a key
  frame (reason "cut"); `max_interval` frames after the last key frame a key frame is forced ("max_interval");
- after propagating, a score (`Adaptive.score`): how far the content has moved since the key frame, the share of
  the frame the key frame did not see and the flow's photometric residual; a high score makes the frame a key
  frame ("residual": the warped features' expected error). The settings were chosen on the dev seed
  (docs/keyframes.md, BENCHMARKS.md).

The budget controller is a credit account: every frame earns 1 / budget, every key frame (any reason) costs 1. A
score makes a key frame when it exceeds `level * steepness ** (1 - credit)` (`level` a slow running mean of the
scores), so key frames go where scores are high and get dear as the account runs low; scores cannot spend below
`-debt`, and a full account (`capacity` key frames) spends itself ("budget"). The account stays within
[-debt - cuts, capacity], so over any video of n frames the key frames number n / budget within that band: the
long-run share is 1 / budget whatever the content, endless streams included (tests/test_keyframes.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from dff.config import KEY_INTERVAL
from dff.errors import DFFError
from dff.keyframes.base import FIRST, Incoming, Propagated
from dff.keyframes.signals import (
    colour_histogram,
    displacement,
    histogram_distance,
    outside_share,
    thumbnail,
    warp_residual,
)

CUT = "cut"
RESIDUAL = "residual"
BUDGET = "budget"
MAX_INTERVAL = "max_interval"


@dataclass
class Adaptive:
    """Key frames from the video's content at one key frame per `budget` frames in the long run.

    min_interval: no key frame by score sooner than this after the last key frame (cuts excepted).
    max_interval: a key frame at the latest this many frames after the last one (default 3 x budget).
    cut_threshold: colour-histogram distance between consecutive frames (0 to 1) that marks a shot cut.
    capacity, debt, steepness, start_credit: the credit account (module docstring); with start_credit 0.5 the
    second key frame of a video comes about as soon as FixedInterval(budget)'s (0 delays it to about twice that,
    1 spends one more key frame per video; measured on the dev seed, BENCHMARKS.md).
    quantile, residual_weight: the score (`score`).
    """

    budget: float = float(KEY_INTERVAL)
    min_interval: int = 2
    max_interval: int | None = None
    cut_threshold: float = 0.3
    capacity: float = 2.0
    debt: float = 1.0
    steepness: float = 2.0
    start_credit: float = 0.5
    quantile: float = 0.95
    residual_weight: float = 1.0
    _credit: float = field(default=1.0, init=False, repr=False)
    _level: float | None = field(default=None, init=False, repr=False)
    _key_id: int = field(default=0, init=False, repr=False)
    _hist: torch.Tensor | None = field(default=None, init=False, repr=False)
    _thumb: tuple | None = field(default=None, init=False, repr=False)
    _cut: bool = field(default=False, init=False, repr=False)
    _key_thumb: torch.Tensor | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.budget, bool) or not isinstance(self.budget, (int, float)) or not 1 <= self.budget < 1e6:
            raise DFFError(f"key budget must be a number of frames per key frame in [1, 1e6), got {self.budget!r}")
        if self.max_interval is None:
            self.max_interval = max(2, int(round(3 * self.budget)))
        if not 1 <= self.min_interval <= self.max_interval:
            raise DFFError(
                f"need 1 <= min_interval <= max_interval, got min {self.min_interval}, max {self.max_interval}"
            )
        if not 0 < self.cut_threshold <= 1:
            raise DFFError(f"cut_threshold must be in (0, 1], got {self.cut_threshold!r}")
        if self.capacity < 1 or self.debt < 0:
            raise DFFError(f"need capacity >= 1 and debt >= 0, got {self.capacity}, {self.debt}")

    def reset(self) -> None:
        self._credit, self._level, self._key_id = self.start_credit, None, 0
        self._hist = self._thumb = self._key_thumb = None

    def before(self, frame: Incoming) -> str | None:
        self._observe(frame)
        if self._cut:
            return CUT
        if frame.frame_id - self._key_id >= self.max_interval:
            return MAX_INTERVAL
        if self._credit >= self.capacity:
            return BUDGET
        return None

    def after(self, frame: Propagated) -> str | None:
        if frame.flow is None or frame.since_key < self.min_interval or self._credit < -self.debt:
            return None
        score = self.score(frame)
        level = self._level = score if self._level is None else 0.99 * self._level + 0.01 * score
        return RESIDUAL if score > level * self.steepness ** (1.0 - self._credit) else None

    def score(self, frame: Propagated) -> float:
        """How far the warped features are likely to be from the frame's own: ten times the displacement since the
        key frame (its `quantile`, per frame width) plus the share of the frame the key frame did not see, plus
        `residual_weight` times the flow's photometric residual."""
        small, valid = self._thumb
        score = 10.0 * displacement(frame.flow, valid, self.quantile) + outside_share(frame.flow, valid)
        if self.residual_weight:
            score += self.residual_weight * warp_residual(small, self._key_thumb, frame.flow, valid)
        return score

    def key_frame(self, frame: Incoming, reason: str) -> None:
        if reason == FIRST:  # `before` does not see a segment's first frame
            self._observe(frame)
        self._credit -= 1.0
        self._key_id, self._key_thumb = frame.frame_id, self._thumb[0]

    def _observe(self, frame: Incoming) -> None:
        """Earn this frame's credit; its thumbnail, histogram and the shot-cut test against the previous frame."""
        self._credit += 1.0 / self.budget
        small, valid = thumbnail(frame.img, frame.img_shape)
        hist = colour_histogram(small, valid)
        self._cut = self._hist is not None and histogram_distance(hist, self._hist) >= self.cut_threshold
        self._hist, self._thumb = hist, (small, valid)
