"""Key-frame policies: which frames of a video run the backbone (dff.api.VideoSession owns one per video)."""

from dff.keyframes.adaptive import BUDGET, CUT, MAX_INTERVAL, RESIDUAL, Adaptive
from dff.keyframes.base import FIRST, INTERVAL, FixedInterval, Incoming, KeyFramePolicy, Propagated
from dff.keyframes.choose import POLICIES, make_policy

__all__ = [
    "FIRST",
    "INTERVAL",
    "CUT",
    "RESIDUAL",
    "BUDGET",
    "MAX_INTERVAL",
    "Adaptive",
    "FixedInterval",
    "Incoming",
    "KeyFramePolicy",
    "Propagated",
    "POLICIES",
    "make_policy",
]
