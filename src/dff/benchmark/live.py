"""`dff benchmark --live`: the live loop over a paced source, sync against async key frames in one run.

Each round runs every key mode once for `seconds` over the source paced at its frame rate (`dff.io.live`: the
newest frame each turn, drops counted), the modes alternating round by round so that a change of machine load hits
both alike. Reported per mode: frames processed and dropped, key frames, latency p50 / p95 / max (frame arrival to
result), and the stage times that make the runtime profile (`dff.live.clock.RuntimeProfile`) of the simulated clock:
sync key and propagated frames; async propagated frames with and without a pass beside the loop, and the pass.
"""

from __future__ import annotations

import datetime
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch

from dff.api import DFFModel
from dff.benchmark.report import machine_info
from dff.io.live import open_live
from dff.live.clock import ModeTimes, RuntimeProfile
from dff.live.loop import KEY_MODES, LiveLoop, LiveOptions, LiveSummary
from dff.run import RunOptions


@dataclass
class ModeRuns:
    """Every round of one key mode: the summaries and the stage times measured."""

    summaries: list[LiveSummary] = field(default_factory=list)
    key_s: list[float] = field(default_factory=list)
    propagate_s: list[float] = field(default_factory=list)
    propagate_busy_s: list[float] = field(default_factory=list)
    backbone_s: list[float] = field(default_factory=list)

    def latencies(self) -> list[float]:
        return [v for s in self.summaries for v in s.latencies]

    def pooled(self) -> LiveSummary:
        """The rounds' figures pooled (latency percentiles over every processed frame)."""
        out = LiveSummary(latencies=self.latencies())
        for s in self.summaries:
            out.processed += s.processed
            out.dropped += s.dropped
            out.received += s.received
            out.key_frames += s.key_frames
            out.seconds += s.seconds
        return out

    def times(self) -> ModeTimes:
        def med(values: list[float]) -> float | None:
            return statistics.median(values) if values else None

        key, prop = med(self.key_s), med(self.propagate_s)
        return ModeTimes(key or prop, prop or key, med(self.propagate_busy_s), med(self.backbone_s))


@dataclass
class LiveReport:
    """The live benchmark of one model on one source."""

    date: str
    machine: dict
    preset: str
    source: str
    seconds: float
    rounds: int
    key_policy: str
    threads: int
    modes: dict[str, ModeRuns]

    def profile(self) -> RuntimeProfile:
        """The runtime profile these runs measured (for `dff test --streaming --clock simulated`)."""
        return RuntimeProfile(
            sync=self.modes["sync"].times() if "sync" in self.modes else self.modes["async"].times(),
            async_=self.modes["async"].times() if "async" in self.modes else self.modes["sync"].times(),
            preset=self.preset,
            machine=str(self.machine.get("cpu", "")),
            device=str(self.machine.get("device", "")),
            threads=self.threads,
            date=self.date,
        )

    def to_dict(self) -> dict:
        return {
            "date": self.date,
            "machine": self.machine,
            "preset": self.preset,
            "source": self.source,
            "seconds_per_round": self.seconds,
            "rounds": self.rounds,
            "key_policy": self.key_policy,
            "threads": self.threads,
            "modes": {
                m: {"pooled": r.pooled().to_dict(), "rounds": [s.to_dict() for s in r.summaries]}
                for m, r in self.modes.items()
            },
            "profile": self.profile().to_dict(),
        }

    def table(self) -> str:
        """One row per key mode: processed, dropped, key frames, latency p50 / p95 / max, p95 / p50."""
        head = f"{'key mode':>9}{'processed':>11}{'dropped':>9}{'drop %':>8}{'keys':>6}{'p50 s':>8}{'p95 s':>8}"
        head += f"{'max s':>8}{'p95/p50':>9}"
        rows = [head, "-" * len(head)]
        for mode, runs in self.modes.items():
            s = runs.pooled()
            p50, p95 = s.latency(50), s.latency(95)
            total = s.processed + s.dropped
            rows.append(
                f"{mode:>9}{s.processed:>11}{s.dropped:>9}{100 * s.dropped / max(total, 1):>8.1f}{s.key_frames:>6}"
                f"{p50:>8.3f}{p95:>8.3f}{max(s.latencies):>8.3f}{p95 / p50:>9.2f}"
            )
        return "\n".join(rows)


def run_live_benchmark(
    model: DFFModel,
    source: str,
    run: RunOptions,
    modes: Sequence[str] = KEY_MODES,
    seconds: float = 30.0,
    rounds: int = 2,
    fps: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> LiveReport:
    """Run the live loop over `source` paced at its rate (or `fps`) for `seconds` per mode and round, the modes
    alternating; see the module docstring."""
    say = progress or (lambda msg: None)
    runs = {m: ModeRuns() for m in modes}
    for k in range(rounds):
        for mode in modes:
            say(f"round {k + 1}/{rounds}: {mode} key frames, {seconds:g} s")
            loop = LiveLoop(model, replace(run, prefetch=False), LiveOptions(mode))
            with open_live(source, fps=fps) as frames:
                results = loop.results(frames)
                try:
                    for r in results:
                        if r.ready_s >= seconds:
                            break
                finally:
                    results.close()
            runs[mode].summaries.append(loop.summary)
            for key, busy, s in loop.steps:
                (runs[mode].key_s if key else runs[mode].propagate_busy_s if busy else runs[mode].propagate_s).append(s)
            if loop.keys is not None and hasattr(loop.keys, "seconds"):
                runs[mode].backbone_s += loop.keys.seconds
    device = model.network(run).device
    return LiveReport(
        date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        machine=machine_info(device),
        preset=model.config.name,
        source=source,
        seconds=seconds,
        rounds=rounds,
        key_policy=repr(run.policy(model.config)),
        threads=torch.get_num_threads(),
        modes=runs,
    )
