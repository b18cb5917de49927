"""Key-frame policies: which frames of a video run the backbone. The video loop (dff.api.VideoSession) owns one.

A policy is asked twice per frame after a segment's first frame (which is always a key frame, reason "first"):
`before(frame)` may make the frame a key frame up front (no other work done); otherwise the frame is
propagated from the last key frame and `after(frame)` sees what that computed (flow, warped features, the key state)
and may still make it a key frame, giving its reason. `reset()` starts a new video or segment; `key_frame(...)`
tells the policy of every key frame made, whatever the reason. One policy instance serves one video at a time: the
loop works on its own copy.

Spec pitfalls handled here: 18 (docs/pitfalls.md maps each to its code and tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from dff.config import KEY_INTERVAL
from dff.errors import DFFError
from dff.models.detector import KeyState

FIRST = "first"  # the first frame of a video or segment
INTERVAL = "interval"  # FixedInterval's schedule


@dataclass(frozen=True)
class Incoming:
    """A frame the loop is about to process (tensors on the model's device)."""

    frame_id: int  # index in its segment
    img: torch.Tensor  # (1, 3, Hp, Wp) float32, the preprocessed frame, zero-padded
    img_shape: tuple[int, int]  # its content inside the padding


@dataclass(frozen=True)
class Propagated(Incoming):
    """What a non-key frame computed, for a policy to judge."""

    since_key: int  # frames since the key frame (>= 1)
    flow: torch.Tensor | None  # (1, 2, Hp, Wp) flow to the key frame, in pixels; None under the zero-flow ablation
    feats: torch.Tensor  # (1, C, h, w) the propagated features
    key: KeyState


class KeyFramePolicy(Protocol):
    """Decides which frames are key frames; a reason is a short word (see FIRST, INTERVAL), None for "not key"."""

    def reset(self) -> None:
        """A new video or segment starts (its frame 0 is a key frame)."""

    def before(self, frame: Incoming) -> str | None:
        """Frame `frame.frame_id` (>= 1) of the segment: a reason to make it a key frame without propagating, or
        None."""

    def after(self, frame: Propagated) -> str | None:
        """The frame has been propagated: a reason to run it as a key frame after all, or None to keep it."""

    def key_frame(self, frame: Incoming, reason: str) -> None:
        """`frame` became a key frame for `reason` (frame 0 of a segment too, with FIRST, after `reset`)."""


@dataclass(frozen=True)
class FixedInterval:
    """mmtracking's rule: the first frame of every segment and every `interval`-th frame after it."""

    interval: int = KEY_INTERVAL

    def __post_init__(self) -> None:
        if isinstance(self.interval, bool) or not isinstance(self.interval, int) or self.interval < 1:
            raise DFFError(f"key interval must be an integer >= 1, got {self.interval!r}")

    def reset(self) -> None:
        """Nothing to reset: the rule depends on the frame id alone."""

    def before(self, frame: Incoming) -> str | None:
        return INTERVAL if frame.frame_id % self.interval == 0 else None

    def after(self, frame: Propagated) -> str | None:
        return None

    def key_frame(self, frame: Incoming, reason: str) -> None:
        """Nothing to remember."""
