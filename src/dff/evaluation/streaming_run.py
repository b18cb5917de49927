"""`dff test --streaming`: each val video replayed at a frame rate into the live loop, scored by streaming AP.

Every video is offered as a live source (frame i at i / fps seconds; the loop takes the newest frame each turn and
drops what it had no time for), run through `dff.live.LiveLoop` in a key mode, and its outputs paired with the
annotated frames by the mtli/sAP rule (`dff.evaluation.streaming`: frame i gets the latest output finished by its
time, none yet counts as no detections); the paired records are then scored like offline results under each
protocol (coco_ap50 is streaming AP50). Two clocks:
- "real": the video is paced in real time on this machine and the loop runs as fast as it can;
- "simulated": time advances by a runtime profile's stage times (`dff benchmark --live --profile-out`, scaled by
  `profile_scale` to stand for other hardware) while the detections are computed for real: reproducible, and the
  number a user compares settings by for the machine the profile was measured on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from dff.api import DFFModel
from dff.data.cocovid import CocoVID
from dff.errors import DatasetError, InputError
from dff.evaluation.ap import APResult
from dff.evaluation.evaluate import METRICS, PROTOCOLS
from dff.evaluation.evaluate import evaluate as evaluate_records
from dff.evaluation.model_eval import schedule
from dff.evaluation.streaming import PairingStats, paired_records, pairing_stats, shown_times
from dff.io.atomic import write_json_atomic
from dff.io.image import read_image
from dff.io.live import pace
from dff.io.result import FrameResult
from dff.io.sources import Frame, FrameSource
from dff.keyframes import KeyFramePolicy
from dff.live.clock import RuntimeProfile, SimulatedClock
from dff.live.loop import DEFAULT_KEY_MODE, KEY_MODES, LiveLoop, LiveOptions, LiveSummary, Replay
from dff.run import RunOptions

CLOCKS = ("simulated", "real")


@dataclass(frozen=True)
class StreamingOptions:
    """How the val videos are streamed: frame rate, clock, key mode, and the runtime profile of the simulated
    clock (with the factor its times are multiplied by)."""

    fps: float = 25.0
    clock: str = "simulated"
    key_mode: str = DEFAULT_KEY_MODE
    profile: RuntimeProfile | None = None

    def __post_init__(self) -> None:
        if self.clock not in CLOCKS:
            raise InputError(f"streaming clock must be one of {', '.join(CLOCKS)}, got {self.clock!r}")
        if self.key_mode not in KEY_MODES:
            raise InputError(f"key mode must be one of {', '.join(KEY_MODES)}, got {self.key_mode!r}")
        if not (0 < self.fps <= 1000):
            raise InputError(f"stream fps must be in (0, 1000], got {self.fps}")
        if self.clock == "simulated" and self.profile is None:
            raise InputError("the simulated clock needs a runtime profile (dff benchmark --live --profile-out P)")

    @property
    def tag(self) -> str:
        return f"stream-{self.key_mode}-{self.clock}"


@dataclass(frozen=True)
class StreamingResult:
    """One policy streamed: streaming AP50 per protocol, how the frames paired with outputs, the live figures."""

    policy: KeyFramePolicy
    options: StreamingOptions
    ap50: dict[str, APResult]
    pairing: PairingStats
    live: LiveSummary
    summary_path: Path

    @property
    def label(self) -> str:
        kind, number, _ = schedule(self.policy)
        what = f"k={number:g}" if kind == "fixed" else f"{kind} {number:g}"
        return f"{what} {self.options.key_mode}"


def stream_video(
    model: DFFModel,
    run: RunOptions,
    frames: Sequence[Frame],
    options: StreamingOptions,
) -> tuple[list[FrameResult], LiveSummary]:
    """One video's frames (`Frame`s timed at `options.fps`; a sequence that reads each frame when indexed is
    enough for the simulated clock, which reads only the frames the loop takes) streamed into the live loop: its
    outputs (each with `arrival_s` / `ready_s` from the stream's start) and the loop's summary."""
    live = LiveOptions(options.key_mode)
    if options.clock == "simulated":
        clock = SimulatedClock()
        loop = LiveLoop(model, run, live, clock, options.profile)
        replay = Replay([f.time_s for f in frames], frames.__getitem__, clock)
        return list(loop.results(replay)), loop.summary
    source = pace(FrameSource("replay", options.fps, len(frames), lambda: iter(frames)), options.fps)
    loop = LiveLoop(model, run, live)
    with source:
        outputs = list(loop.results(source))
    start = _stream_start(outputs)
    return [replace(r, arrival_s=r.arrival_s - start, ready_s=r.ready_s - start) for r in outputs], loop.summary


def _stream_start(outputs: list[FrameResult]) -> float:
    """The loop-clock time at which frame 0 was shown (a paced source shows frame i at start + i / fps)."""
    return outputs[0].arrival_s - outputs[0].time_s if outputs else 0.0


class VideoFrames(Sequence[Frame]):
    """A dataset video's frames timed at `fps`, each read from disk when indexed (nothing held in memory)."""

    def __init__(self, images: list[dict], img_root: Path, fps: float) -> None:
        self.images, self.img_root, self.fps = images, img_root, fps

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, k: int) -> Frame:  # type: ignore[override]
        return Frame(k, k / self.fps, read_image(self.img_root / self.images[k]["file_name"], DatasetError))


def evaluate_streaming(
    model: DFFModel,
    dataset: CocoVID,
    img_root: Path | str,
    out: Path | str,
    policies: Sequence[KeyFramePolicy],
    options: StreamingOptions,
    run: RunOptions | None = None,
    metrics: Sequence[str] = METRICS,
    progress: Callable[[str], None] | None = None,
) -> list[StreamingResult]:
    """Stream every video of `dataset` under each policy and score streaming AP50 (module docstring); writes
    `summary_{tag}_{stream tag}.json` per policy into `out`. AP is over every detection (run.score_thr and
    run.classes do not apply)."""
    img_root, out = Path(img_root), Path(out)
    run = replace(
        run or RunOptions(), score_thr=0.0, classes=None, keep_frames=False, return_flow=False, prefetch=False
    )
    dataset.category_ids(model.class_names)
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda msg: None)
    results = []
    for policy in policies:
        records: list[FrameResult] = []
        stats: list[PairingStats] = []
        live = LiveSummary()
        for video, images in dataset.iter_videos():
            say(f"{schedule(policy)[2]} {options.key_mode} ({options.clock} clock): {video.get('name', video['id'])}")
            frames = VideoFrames(images, img_root, options.fps)
            outputs, summary = stream_video(model, replace(run, key_policy=policy), frames, options)
            times = shown_times(range(len(images)), options.fps)
            records += paired_records(video["id"], images, times, outputs, [r.ready_s for r in outputs])
            stats.append(_pairing(times, outputs, options.fps))
            _add(live, summary)
        ap = evaluate_records(dataset, records, model.class_names, metrics)
        pairing = PairingStats(
            frames=sum(s.frames for s in stats),
            missed=sum(s.missed for s in stats),
            in_time=sum(s.in_time for s in stats),
            mean_delay_frames=_weighted([(s.mean_delay_frames, s.frames - s.missed) for s in stats]),
        )
        path = out / f"summary_{schedule(policy)[2]}_{options.tag}.json"
        write_json_atomic(
            {
                "ann": str(dataset.path),
                "preset": model.config.name,
                "key_policy": repr(policy),
                "backend": run.backend,
                "stream": {
                    "fps": options.fps,
                    "clock": options.clock,
                    "key_mode": options.key_mode,
                    "profile": None if options.profile is None else options.profile.to_dict(),
                },
                "protocols": {k: f"streaming {PROTOCOLS[k]}" for k in ap},
                "streaming_ap50": {k: v.to_dict(model.class_names) for k, v in ap.items()},
                "pairing": dataclasses.asdict(pairing),
                "live": live.to_dict(),
            },
            path,
        )
        results.append(StreamingResult(policy, options, ap, pairing, live, path))
    return results


def _pairing(times: list[float], outputs: list[FrameResult], fps: float) -> PairingStats:
    from dff.evaluation.streaming import pair_outputs

    pairs = pair_outputs(times, [r.ready_s for r in outputs])
    return pairing_stats(pairs, list(range(len(times))), [round(r.time_s * fps) for r in outputs])


def _add(total: LiveSummary, one: LiveSummary) -> None:
    total.processed += one.processed
    total.dropped += one.dropped
    total.received += one.received
    total.key_frames += one.key_frames
    total.seconds += one.seconds
    total.latencies += one.latencies


def _weighted(pairs: list[tuple[float | None, int]]) -> float | None:
    pairs = [(v, n) for v, n in pairs if v is not None and n]
    total = sum(n for _, n in pairs)
    return sum(v * n for v, n in pairs) / total if total else None


def streaming_table(results: Sequence[StreamingResult]) -> str:
    """Policy and key mode, streaming AP50 (%) per protocol, frames processed / dropped, latency p50 / p95."""
    protocols = list(results[0].ap50) if results else []
    head = f"{'setting':>22}" + "".join(f"{'s' + p:>17}" for p in protocols)
    head += f"{'processed':>11}{'dropped':>9}{'p50 s':>8}{'p95 s':>8}{'missed':>8}"
    rows = [head, "-" * len(head)]
    for r in results:
        cells = "".join(("-" if v.mean is None else f"{100 * v.mean:.1f}").rjust(17) for v in r.ap50.values())
        p50, p95 = r.live.latency(50), r.live.latency(95)
        rows.append(
            f"{r.label:>22}{cells}{r.live.processed:>11}{r.live.dropped:>9}"
            f"{(p50 or 0):>8.3f}{(p95 or 0):>8.3f}{r.pairing.missed:>8}"
        )
    return "\n".join(rows)
