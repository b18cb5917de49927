"""Clocks of a live run and the runtime profile that drives the simulated one.

A live run reads the time twice per frame: when the frame arrived and when its result was ready. On the real clock
(`RealClock`, `time.monotonic`) that is this machine's time. On the simulated clock (`SimulatedClock`), which
streaming evaluation uses to be reproducible and to stand for other hardware, the time is advanced by the stage
times of a `RuntimeProfile` (measured by `dff benchmark --live`, optionally scaled) instead of by the computation;
the detections are computed for real either way.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Protocol

from dff.errors import InputError
from dff.io.atomic import write_text_atomic

PROFILE_FORMAT = "dff-runtime-profile"
PROFILE_VERSION = 1


class Clock(Protocol):
    """Seconds on some clock."""

    def now(self) -> float:
        """The current time."""


class RealClock:
    """This machine's monotonic clock."""

    def now(self) -> float:
        return time.monotonic()


class SimulatedClock:
    """A clock that only moves when told: `advance(seconds)`, `wait_until(t)`."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def wait_until(self, t: float) -> None:
        self._now = max(self._now, t)


@dataclass(frozen=True)
class ModeTimes:
    """Stage times of one key mode, in seconds per frame (medians).

    key_s: a frame whose key features the loop computes itself (every key frame in sync mode; the first frame of a
    video in async mode); propagate_s: a propagated frame while no key frame is computed beside the loop;
    propagate_busy_s: a propagated frame while one is (async mode; the loop then has fewer cores); backbone_s: a key
    frame's pass beside the loop (async mode).
    """

    key_s: float
    propagate_s: float
    propagate_busy_s: float | None = None
    backbone_s: float | None = None


@dataclass(frozen=True)
class RuntimeProfile:
    """What one machine measured for one model: the stage times of each key mode, and where they come from."""

    sync: ModeTimes
    async_: ModeTimes
    preset: str = ""
    machine: str = ""
    device: str = ""
    threads: int | None = None
    date: str = ""
    scale: float = 1.0  # the times below were multiplied by this (a faster or slower machine)

    def times(self, key_mode: str) -> ModeTimes:
        """The stage times of "sync" or "async"."""
        return self.sync if key_mode == "sync" else self.async_

    def scaled(self, factor: float) -> RuntimeProfile:
        """Every time multiplied by `factor` (0.1: a machine ten times as fast)."""
        if not (math.isfinite(factor) and factor > 0):
            raise InputError(f"a profile scale must be a positive number, got {factor}")

        def times(t: ModeTimes) -> ModeTimes:
            return ModeTimes(*(None if v is None else v * factor for v in asdict(t).values()))

        return replace(self, sync=times(self.sync), async_=times(self.async_), scale=self.scale * factor)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["async"] = d.pop("async_")
        return {"format": PROFILE_FORMAT, "version": PROFILE_VERSION, **d}

    def save(self, path: str | os.PathLike) -> None:
        write_text_atomic(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> RuntimeProfile:
        """Read a profile written by `save` (`dff benchmark --live --profile-out`); InputError naming the file and
        the problem otherwise."""
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{path}: no such runtime profile") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"{path}: not a readable runtime profile ({e})") from None
        if not isinstance(d, dict) or d.get("format") != PROFILE_FORMAT or d.get("version") != PROFILE_VERSION:
            raise InputError(f"{path}: not a dff runtime profile (format {PROFILE_FORMAT} version {PROFILE_VERSION})")
        try:
            modes = {m: ModeTimes(**d[m]) for m in ("sync", "async")}
            for m, t in modes.items():
                for name, v in asdict(t).items():
                    if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                        raise ValueError(f"{m}.{name} is {v!r}, not a positive number of seconds")
            if modes["async"].propagate_busy_s is None or modes["async"].backbone_s is None:
                raise ValueError("async needs propagate_busy_s and backbone_s")
            rest = {k: d[k] for k in ("preset", "machine", "device", "threads", "date", "scale") if k in d}
            return cls(modes["sync"], modes["async"], **rest)
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{path}: bad runtime profile: {e}") from None
