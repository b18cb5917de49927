"""The detection pipeline behind `dff detect` and `dff demo`: frames in, results into every writer of `Outputs`.

The decoding runs in a background thread (dff.io.sources), the model in the calling thread, and every output is
written as each frame finishes, so memory is constant on any length of input. The first Ctrl-C (or SIGTERM) stops
after the current frame with every output complete and playable; a second one aborts at once (outputs are still
closed). With `DetectOptions.tracker` every detection gets a track id online (dff.tracking.track), still frame by
frame. With `DetectOptions.seq_nms` (files only) the results are held until the video ends (or is stopped, or the
video turns out damaged), then rescored by Seq-NMS over the frames read and written once, atomically; the
annotated video is drawn in a second decoding pass.

Thresholds: the model keeps every detection; the tracker and Seq-NMS see all of them (of the run's classes);
`run.score_thr` then selects what the JSONL, video and MOT tracks show, and `DetectOptions.coco_score_thr` what the
COCO results keep (by default every detection, as an evaluation needs).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path

from tqdm import tqdm

from dff.api import DFFModel
from dff.data.transforms import image_meta
from dff.errors import DFFError, InputError, Terminated
from dff.io.live import LiveSource
from dff.io.outputs import Output, check_outputs
from dff.io.result import FrameResult
from dff.io.sources import FrameSource, open_source
from dff.io.writers import Outputs, ResultWriter, video_format
from dff.live.loop import LiveLoop, LiveOptions, LiveSummary
from dff.live.preview import Preview
from dff.run import RunOptions
from dff.tracking.online import TrackerConfig, require_track_extra, track
from dff.tracking.seq_nms import SeqNMSConfig, seq_nms_results

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectOptions:
    """What a detection run does besides the model: how many frames, tracking, Seq-NMS, what the COCO results keep,
    progress."""

    max_frames: int | None = None
    tracker: TrackerConfig | None = None  # give every detection a track id (the optional 'track' extra)
    seq_nms: SeqNMSConfig | None = None  # rescore over the whole video, write at the end (files, not streams)
    coco_score_thr: float = 0.0  # the COCO results keep detections scoring at least this (0: all)
    progress: bool = True
    keep_bar: bool = True  # leave the finished progress bar on screen


@dataclass
class DetectSummary:
    """What a run did: frames, key frames, wall time, kept detections per class, whether it was stopped early."""

    frames: int = 0
    key_frames: int = 0
    seconds: float = 0.0
    counts: Counter = field(default_factory=Counter)  # class name -> detections kept
    frames_with: Counter = field(default_factory=Counter)  # class name -> frames with at least one of them
    interrupted: bool = False
    terminated: bool = False  # stopped by SIGTERM rather than Ctrl-C
    error: DFFError | None = None  # the source failed part-way (with Seq-NMS: after the frames read were written)
    live: LiveSummary | None = None  # a live run's figures: processed / dropped frames, latencies

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        found = ", ".join(f"{name} {n}" for name, n in self.counts.most_common()) or "nothing"
        stopped = " (interrupted)" if self.interrupted else ""
        if self.live is not None:
            return f"{self.live.describe()}{stopped}; detections: {found}"
        return (
            f"{self.frames} frames ({self.key_frames} key frames) in {self.seconds:.1f} s, {self.fps:.1f} fps"
            f"{stopped}; detections: {found}"
        )

    def count(self, r: FrameResult) -> None:
        """Add one frame's shown detections."""
        names = r.names
        self.counts.update(names)
        self.frames_with.update(set(names))


class StopOnInterrupt:
    """First SIGINT or SIGTERM sets `requested` (the loop stops after the current frame); a second one raises
    KeyboardInterrupt (Terminated for SIGTERM) at once. Entered inside another one that was already asked to stop
    (a loop over videos), it starts as requested."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        self.requested, self.signum = True, signum
        log.warning("stopping after the current frame (Ctrl-C again to abort)")

    def __enter__(self) -> StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        outer = getattr(self._previous.get(signal.SIGINT), "__self__", None)
        if isinstance(outer, StopOnInterrupt) and outer.requested:
            self.requested, self.signum = True, outer.signum
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def mark(self, summary: DetectSummary) -> None:
        """Record in `summary` that the run was stopped, and by which signal."""
        summary.interrupted = True
        summary.terminated = self.signum == signal.SIGTERM


def summary_exit_code(summary: DetectSummary) -> int:
    """The exit status of a finished run: 0, or 130 / 143 when Ctrl-C / SIGTERM stopped it."""
    if summary.terminated:
        return 143
    return 130 if summary.interrupted else 0


def class_ids_for(names: str | list[str], class_names: tuple[str, ...]) -> tuple[int, ...]:
    """'car,bicycle' -> their indices in `class_names`; an unknown name is an InputError listing the known ones."""
    wanted = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    unknown = [n for n in wanted if n not in class_names]
    if unknown:
        raise InputError(f"unknown class {', '.join(map(repr, unknown))}; known classes: {', '.join(class_names)}")
    return tuple(list(class_names).index(n) for n in wanted)


OPTION = {"json": "--out-json", "video": "--out-video", "coco": "--out-coco", "mot": "--out-mot", "flow": "--show-flow"}
"""The `dff detect` option of each kind of output (for messages)."""


def check_detect_outputs(outputs: Outputs, inputs: list[str | os.PathLike], tracker: TrackerConfig | None) -> None:
    """The checks every detection run makes before any work: each output path (not an input, not shared, writable),
    the video's extension, and MOT tracks only with a tracker."""
    check_outputs(
        [
            Output(path, OPTION[kind], folder=kind == "flow", make_parents=kind == "flow")
            for kind, path in outputs.given().items()
        ],
        inputs=inputs,
    )
    if outputs.video is not None:
        video_format(outputs.video)
    if outputs.mot is not None and tracker is None:
        raise InputError(f"{outputs.mot}: MOTChallenge tracks need track ids: add --track")


def detect_source(
    model: DFFModel,
    source: FrameSource | str | os.PathLike,
    outputs: Outputs,
    opts: DetectOptions | None = None,
    run: RunOptions | None = None,
) -> DetectSummary:
    """Run the model over `source` (a `FrameSource` or a path `open_source` takes) and write each output frame by
    frame; returns a summary.

    The output paths are checked first (OutputError if one is the source, two share a path, or one cannot be
    written), so a bad path fails before any frame is run; so are a stream with `opts.seq_nms` (InputError) and
    a missing 'track' extra with `opts.tracker` (DFFError).
    """
    opts, run = opts or DetectOptions(), run or RunOptions()
    check_detect_outputs(outputs, [source.name if isinstance(source, FrameSource) else source], opts.tracker)
    if not isinstance(source, FrameSource):
        source = open_source(source)
    if opts.seq_nms is not None and source.is_stream:
        raise InputError(f"{source.name}: Seq-NMS needs the whole video, so it runs on files, not on streams")
    if opts.tracker is not None:
        require_track_extra()
    model_run = replace(
        run,
        score_thr=0.0,
        keep_frames=(outputs.video is not None and opts.seq_nms is None) or outputs.flow is not None,
        return_flow=outputs.flow is not None,
    )
    summary = DetectSummary()
    total = source.num_frames if opts.max_frames is None else min(source.num_frames or opts.max_frames, opts.max_frames)
    held: list[FrameResult] = []  # with Seq-NMS: every result (without its frame) until the end
    start = time.perf_counter()
    with StopOnInterrupt() as stop, ExitStack() as stack:
        stack.callback(source.close)
        live = outputs if opts.seq_nms is None else Outputs(flow=outputs.flow)
        writers = live.open(stack, source.fps, lambda shape: flow_coverage(shape, model))
        results: Iterator[FrameResult] = model.predict(islice(source, opts.max_frames), model_run)
        stack.callback(results.close)
        if opts.tracker is not None:
            results = track(results, opts.tracker)
        bar = stack.enter_context(_bar(opts, total, Path(source.name).name or source.name))
        try:
            for r in results:
                if opts.seq_nms is not None:
                    held.append(replace(r, image=None, flow=None))
                    _write(writers, r, run, opts, summary, shown=False)
                else:
                    _write(writers, r, run, opts, summary)
                summary.frames += 1
                summary.key_frames += int(r.is_key_frame)
                bar.update(1)
                if stop.requested:
                    stop.mark(summary)
                    break
        except DFFError as e:
            if opts.seq_nms is None or not held:
                raise
            summary.error = e  # a damaged video: Seq-NMS over the frames before the damage, then the error
        if opts.seq_nms is not None:
            stack.close()  # the model and the decoding stop before Seq-NMS and the writing
            _write_rescored(model, source, outputs, opts, run, held, summary, stop)
    summary.seconds = time.perf_counter() - start
    if summary.error is not None:
        raise summary.error
    return summary


def detect_live(
    model: DFFModel,
    source: LiveSource,
    outputs: Outputs,
    opts: DetectOptions | None = None,
    run: RunOptions | None = None,
    live: LiveOptions | None = None,
    preview: Preview | None = None,
) -> DetectSummary:
    """Run the model on a live source (`dff.io.live`: a stream, a camera, a paced file) with `dff.live.LiveLoop`:
    the newest frame each turn, key frames as `live.key_mode` says, every result with its arrival and ready time,
    written frame by frame; `preview` (optional) shows the annotated frames and the running figures. Stops at the
    end of the source, after `opts.max_frames` frames, or at Ctrl-C / SIGTERM (outputs complete either way); a
    stream that stops sending ends with its one-line timeout error after the outputs are closed."""
    opts, run = opts or DetectOptions(), run or RunOptions()
    check_detect_outputs(outputs, [source.name], opts.tracker)
    if opts.seq_nms is not None:
        raise InputError(f"{source.name}: Seq-NMS needs the whole video, so it runs on files, not on live sources")
    if opts.tracker is not None:
        require_track_extra()
    model_run = replace(
        run,
        score_thr=0.0,
        prefetch=False,
        keep_frames=outputs.needs_frames or preview is not None,
        return_flow=outputs.flow is not None,
    )
    loop = LiveLoop(model, model_run, live)
    summary = DetectSummary(live=loop.summary)
    with StopOnInterrupt() as stop, ExitStack() as stack:
        stack.callback(source.close)
        writers = outputs.open(stack, source.fps, lambda shape: flow_coverage(shape, model))
        results: Iterator[FrameResult] = loop.results(source)
        stack.callback(results.close)
        if opts.tracker is not None:
            results = track(results, opts.tracker)
        for r in islice(results, opts.max_frames):
            shown = _write(writers, r, run, opts, summary)
            summary.frames += 1
            summary.key_frames = loop.summary.key_frames
            if preview is not None:
                preview.publish(shown.plot, _figures(loop.summary, r))
            if stop.requested:
                stop.mark(summary)
                break
    summary.seconds = loop.summary.seconds
    return summary


def _figures(live: LiveSummary, r: FrameResult) -> dict:
    """The running figures the preview shows."""
    return {
        "frame": r.frame_index,
        "fps": round(live.processed / live.seconds, 1) if live.seconds > 0 else None,
        "latency_s": round(r.latency_s, 3) if r.latency_s is not None else None,
        "latency_p95_s": _3(live.latency(95)),
        "processed": live.processed,
        "dropped": live.dropped,
        "key_frames": live.key_frames,
        "key_frame": r.key_index,
    }


def _3(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def _write(
    writers: dict[str, ResultWriter],
    r: FrameResult,
    run: RunOptions,
    opts: DetectOptions,
    summary: DetectSummary,
    shown: bool = True,
) -> FrameResult:
    """One frame into every writer: the COCO results above `opts.coco_score_thr`, the others above
    `run.score_thr`; the shown detections counted in the summary and returned."""
    visible = r.subset(r.scores >= run.score_thr)
    for kind, writer in writers.items():
        writer.write(r.subset(r.scores >= opts.coco_score_thr) if kind == "coco" else visible)
    if shown:
        summary.count(visible)
    return visible


def _bar(opts: DetectOptions, total: int | None, desc: str) -> tqdm:
    return tqdm(
        total=total, unit="frame", desc=desc, disable=not opts.progress, leave=opts.keep_bar, dynamic_ncols=True
    )


def flow_coverage(frame_shape: tuple[int, ...], model: DFFModel) -> tuple[float, float]:
    """(h, w) fraction of the padded network input (hence of the feature map) that the frame covers."""
    meta = image_meta(*frame_shape[:2], model.config.preprocess)
    return meta.img_shape[0] / meta.pad_shape[0], meta.img_shape[1] / meta.pad_shape[1]


def _write_rescored(
    model: DFFModel,
    source: FrameSource,
    outputs: Outputs,
    opts: DetectOptions,
    run: RunOptions,
    held: list[FrameResult],
    summary: DetectSummary,
    stop: StopOnInterrupt,
) -> None:
    """Seq-NMS over the held results, then the JSONL, COCO results and tracks written once, atomically, then the
    video drawn while the source is decoded again (a Ctrl-C there stops it with the video complete so far)."""
    if not held:
        return
    rescored = seq_nms_results(held, opts.seq_nms)
    files = Outputs(json=outputs.json, coco=outputs.coco, mot=outputs.mot)
    with ExitStack() as stack:  # the writers' temporary files are moved into place when closed
        writers = files.open(stack, source.fps, lambda shape: flow_coverage(shape, model))
        for r in rescored:
            _write(writers, r, run, opts, summary)
    if outputs.video is None:
        return
    asked = stop.requested
    with ExitStack() as stack:
        stack.callback(source.close)
        video = Outputs(video=outputs.video).open(stack, source.fps, lambda shape: (1.0, 1.0))["video"]
        bar = stack.enter_context(_bar(opts, len(rescored), "video"))
        for f, r in zip(islice(source, len(rescored)), rescored):
            video.write(replace(r.subset(r.scores >= run.score_thr), image=f.image))
            bar.update(1)
            if stop.requested and not asked:
                stop.mark(summary)
                break
