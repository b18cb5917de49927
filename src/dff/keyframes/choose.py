"""`make_policy`: the one constructor of a key-frame policy from the command-line options (kind, interval, budget,
min / max interval), with the defaults written once (`dff.config.KEY_INTERVAL`); `dff detect`, `dff test` and
`dff benchmark` all build their policies with it."""

from __future__ import annotations

import math

from dff.config import KEY_INTERVAL
from dff.errors import DFFError
from dff.keyframes.adaptive import Adaptive
from dff.keyframes.base import FixedInterval, KeyFramePolicy

POLICIES = ("fixed", "adaptive")


def make_policy(
    kind: str,
    interval: int | None = None,
    budget: float | None = None,
    min_interval: int | None = None,
    max_interval: int | None = None,
) -> KeyFramePolicy | None:
    """The one constructor of a command line's key-frame policy: "fixed" -> `FixedInterval(interval)` (None without
    an interval: the preset's); "adaptive" -> `Adaptive(budget or interval or the default, min_interval,
    max_interval)`. DFFError naming the option for a value that cannot be a schedule."""
    if kind not in POLICIES:
        raise DFFError(f"--key-policy must be one of {', '.join(POLICIES)}, got {kind!r}")
    if interval is not None and not 1 <= interval <= 1_000_000:
        raise DFFError(f"--key-interval must be an integer in [1, 1000000], got {interval}")
    if kind == "fixed":
        given = {"--key-budget": budget, "--key-min-interval": min_interval, "--key-max-interval": max_interval}
        named = [k for k, v in given.items() if v is not None]
        if named:
            raise DFFError(f"{', '.join(named)} needs --key-policy adaptive")
        return None if interval is None else FixedInterval(interval)
    if budget is not None and not (math.isfinite(budget) and 1 <= budget <= 1_000_000):
        raise DFFError(f"--key-budget must be a number of frames in [1, 1000000], got {budget}")
    for option, value in (("--key-min-interval", min_interval), ("--key-max-interval", max_interval)):
        if value is not None and not 1 <= value <= 1_000_000:
            raise DFFError(f"{option} must be an integer in [1, 1000000], got {value}")
    extra = {"min_interval": min_interval, "max_interval": max_interval}
    chosen = budget if budget is not None else float(interval or KEY_INTERVAL)
    return Adaptive(budget=chosen, **{k: v for k, v in extra.items() if v is not None})
