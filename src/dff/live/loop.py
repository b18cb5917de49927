"""The live loop: a camera or stream never falls behind, key frames are computed beside the loop, every result
carries its latency.

Each turn takes the newest frame the source has (`dff.io.live`: frames the loop was too busy for are dropped and
counted, never queued), preprocesses it, runs the DFF step of its video session and stamps the result with the
frame's arrival and the time the result was ready (seconds since the run started, on the run's clock).

Key modes (`LiveOptions.key_mode`):
- "sync": as offline, a key frame runs the backbone in the loop (the loop stalls for it);
- "async": a key frame asked for once the video has a key state runs beside the loop (`dff.live.keys`), while the
  loop keeps propagating later frames from the previous key state; the frames after it lands propagate from it.
Every key-frame policy works in both modes. On CPU the two sides share the cores deliberately: in async mode the
worker runs its passes on its own OpenMP thread team of `worker_threads` threads (default half the cores) while the
loop keeps `loop_threads` (default all of them), and both teams must sleep when idle instead of spinning
(`OMP_WAIT_POLICY=PASSIVE`, set before torch starts: `dff detect` does it for async live runs, `LiveLoop` warns when
it is not set). Measured on the 2-core CPU (BENCHMARKS.md, "Live video"): with spinning teams the loop's latency
tail doubles; with a loop restricted to its half the loop processes a fifth fewer frames.

On the simulated clock (`simulate`) the detections are computed the same way but time advances by a runtime
profile's stage times, so that streaming evaluation is reproducible and can stand for other hardware.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch

from dff.api import DFFModel
from dff.errors import DFFError
from dff.io.live import LiveFrame
from dff.io.result import FrameResult
from dff.io.sources import Frame
from dff.live import DEFAULT_KEY_MODE, KEY_MODES
from dff.live.clock import Clock, RealClock, RuntimeProfile, SimulatedClock
from dff.live.keys import BackgroundKeys, SimulatedKeys
from dff.run import RunOptions

log = logging.getLogger(__name__)

EPSILON = 1e-9  # simulated times that differ by less are equal (sums of stage times are not exact in binary)


@dataclass(frozen=True)
class LiveOptions:
    """How a live run schedules its work: the key mode and, on CPU in async mode, the OpenMP threads of each side
    (None: half the cores for the worker, all of them for the loop)."""

    key_mode: str = DEFAULT_KEY_MODE
    worker_threads: int | None = None
    loop_threads: int | None = None

    def __post_init__(self) -> None:
        if self.key_mode not in KEY_MODES:
            raise DFFError(f"--key-mode must be one of {', '.join(KEY_MODES)}, got {self.key_mode!r}")
        for name in ("worker_threads", "loop_threads"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= 1024:
                raise DFFError(f"{name} must be an integer in [1, 1024], got {value}")

    def threads(self) -> tuple[int, int]:
        """(threads of the loop, of the worker) on this machine."""
        total = torch.get_num_threads()
        return self.loop_threads or total, self.worker_threads or max(1, total // 2)


@dataclass
class LiveSummary:
    """What a live run did: frames processed and dropped, backbone passes, each processed frame's latency."""

    processed: int = 0
    dropped: int = 0
    received: int = 0
    key_frames: int = 0  # backbone passes, in the loop or beside it
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    interrupted: bool = False
    terminated: bool = False

    def latency(self, q: float) -> float | None:
        """The q-th percentile (0-100) of the latencies, None before any frame."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        k = (len(ordered) - 1) * q / 100
        lo, hi = math.floor(k), math.ceil(k)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)

    def to_dict(self) -> dict:
        return {
            "processed": self.processed,
            "dropped": self.dropped,
            "received": self.received,
            "key_frames": self.key_frames,
            "seconds": round(self.seconds, 3),
            "fps": round(self.processed / self.seconds, 3) if self.seconds > 0 else None,
            "latency_p50_s": _round(self.latency(50)),
            "latency_p95_s": _round(self.latency(95)),
            "latency_max_s": _round(max(self.latencies, default=None)),
        }

    def describe(self) -> str:
        """The summary line of a live run."""
        d = self.to_dict()
        stopped = " (interrupted)" if self.interrupted else ""
        if not self.processed:
            return f"live: no frame processed{stopped}"
        return (
            f"live: {d['processed']} frames processed, {d['dropped']} dropped, {d['key_frames']} key frames in "
            f"{d['seconds']:.1f} s ({d['fps']:.1f} fps){stopped}; latency p50 {d['latency_p50_s']:.3f} s, "
            f"p95 {d['latency_p95_s']:.3f} s, max {d['latency_max_s']:.3f} s"
        )


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


class LiveLoop:
    """One live video through a model: iterate `results(frames)`; `summary` fills as it goes.

    `frames` yields `LiveFrame`s (a `dff.io.live.LiveSource`, or `Replay` on the simulated clock); their
    `arrival_s` are on `clock`. Results carry `arrival_s` and `ready_s` in seconds since the loop started.
    """

    def __init__(
        self,
        model: DFFModel,
        run: RunOptions | None = None,
        options: LiveOptions | None = None,
        clock: Clock | None = None,
        profile: RuntimeProfile | None = None,
    ) -> None:
        self.model, self.run = model, run or RunOptions()
        self.options = options or LiveOptions()
        self.clock = clock or RealClock()
        self.simulated = isinstance(self.clock, SimulatedClock)
        if self.simulated and profile is None:
            raise DFFError("a simulated clock needs a runtime profile (dff benchmark --live --profile-out)")
        self.profile = profile
        self.summary = LiveSummary()
        self.start = self.clock.now()
        self.keys: BackgroundKeys | SimulatedKeys | None = None
        self.steps: list[tuple[bool, bool, float]] = []  # real clock: (key frame in the loop, pass beside it, seconds)

    def results(self, frames: Iterable[LiveFrame]) -> Iterator[FrameResult]:
        """The result of each frame the loop takes, as soon as it is ready."""
        async_ = self.options.key_mode == "async"
        loop_threads, worker_threads = self.options.threads()
        if async_:
            if self.simulated:
                self.keys = SimulatedKeys(self.clock, self.profile.async_.backbone_s)
            else:
                self.keys = BackgroundKeys(worker_threads)
        session = self.model.session(self.run, self.keys)
        cpu = not self.simulated and self.model.network(self.run).device.type == "cpu"
        before = torch.get_num_threads()
        if cpu and async_:
            if os.environ.get("OMP_WAIT_POLICY", "").lower() != "passive":
                log.warning(
                    "async key frames on CPU: set OMP_WAIT_POLICY=PASSIVE before torch starts (dff detect does), "
                    "or the two thread teams spin against each other"
                )
            torch.set_num_threads(loop_threads)
        shape, frame_id = None, 0
        self.start = self.clock.now()
        try:
            for frame in frames:
                if frame.image.shape != shape:
                    shape, frame_id = frame.image.shape, 0
                busy = self.keys is not None and self.keys.busy
                turn = self.clock.now()
                inp = self.model.prepare(frame, frame_id, self.run, frame.arrival_s - self.start)
                r = session.step(inp)
                frame_id += 1
                busy = busy or (self.keys is not None and self.keys.busy)
                if self.simulated:
                    self.clock.advance(self._cost(r, busy))
                else:
                    self.steps.append((r.is_key_frame, busy, self.clock.now() - turn))
                r = replace(r, ready_s=self.clock.now() - self.start)
                self.summary.processed += 1
                self.summary.key_frames = session.backbone_passes
                self.summary.dropped = getattr(frames, "dropped", 0)
                self.summary.latencies.append(r.ready_s - r.arrival_s)
                self.summary.seconds = r.ready_s
                yield r
        finally:
            if cpu and torch.get_num_threads() != before:
                torch.set_num_threads(before)
            if self.keys is not None:
                self.keys.close()
            for name in ("received", "dropped"):
                if hasattr(frames, name):
                    setattr(self.summary, name, getattr(frames, name))

    def _cost(self, r: FrameResult, busy: bool) -> float:
        """A frame's time on the simulated clock: the profile's time for what the loop did."""
        times = self.profile.times(self.options.key_mode)
        if r.is_key_frame:
            return times.key_s
        return times.propagate_busy_s if busy and times.propagate_busy_s else times.propagate_s


class Replay:
    """A video offered as a live source on a simulated clock: frame i becomes available at `times[i]`, and each
    request takes the newest frame available (waiting for the next one when the loop is ahead); frames overtaken
    before a request are dropped, and never read (`load(i)` reads frame i). `received`, `taken`, `dropped` as
    `dff.io.live.LiveSource`'s."""

    def __init__(self, times: Sequence[float], load: Callable[[int], Frame], clock: SimulatedClock) -> None:
        self.times, self.load, self.clock = list(times), load, clock
        self.received = self.taken = self.dropped = 0
        self._next = 0  # first frame not yet taken or dropped

    @classmethod
    def of(cls, frames: Sequence[Frame], clock: SimulatedClock) -> Replay:
        """Frames in memory, at their own times."""
        return cls([f.time_s for f in frames], frames.__getitem__, clock)

    def __iter__(self) -> Iterator[LiveFrame]:
        while self._next < len(self.times):
            if self.times[self._next] > self.clock.now() + EPSILON:
                self.clock.wait_until(self.times[self._next])
            now = self.clock.now()
            newest = self._next
            while newest + 1 < len(self.times) and self.times[newest + 1] <= now + EPSILON:
                newest += 1
            self.dropped += newest - self._next
            self.taken += 1
            self.received = self.taken + self.dropped
            self._next = newest + 1
            f = self.load(newest)
            yield LiveFrame(f.index, self.times[newest], f.image, self.times[newest])
