"""The detection pipeline behind `dff detect` and `dff demo`: frames in, JSONL / mp4 / COCO / flow pictures out.

The decoding runs in a background thread (dff.io.sources), the model in the calling thread, and every output is
written as each frame finishes, so memory is constant on any length of input. The first Ctrl-C (or SIGTERM) stops
after the current frame with every output complete and playable; a second one aborts at once (outputs are still
closed). With `DetectOptions.tracker` every detection gets a track id online (dff.tracking.track), still frame by
frame. With `DetectOptions.seq_nms` (files only) the results are held until the video ends (or is stopped), then
rescored by Seq-NMS over the whole video and written once, atomically; the annotated video is drawn in a second
decoding pass.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from dff.api import DFFModel, FrameResult
from dff.data.transforms import image_meta
from dff.errors import InputError, Terminated
from dff.io.atomic import atomic_path
from dff.io.draw import TrackTrails, draw_detections, draw_frame_marker, flow_picture
from dff.io.outputs import Output, check_outputs
from dff.io.sources import Frame, FrameSource
from dff.io.writers import CocoResultsWriter, JsonlWriter, VideoWriter, detection_record, video_format
from dff.tracking.online import TrackerConfig, require_track_extra, track
from dff.tracking.seq_nms import SeqNMSConfig, seq_nms_results

log = logging.getLogger(__name__)


@dataclass
class DetectOptions:
    """What to keep and where to write it; an output left as None is not written."""

    score_thr: float = 0.5
    class_ids: Sequence[int] | None = None  # keep only these classes (indices into model.class_names)
    out_json: str | Path | None = None  # JSONL, '-' for stdout
    out_video: Path | None = None
    out_coco: Path | None = None
    show_flow: Path | None = None  # folder for one flow picture per non-key frame
    max_frames: int | None = None
    progress: bool = True
    keep_bar: bool = True  # leave the finished progress bar on screen
    tracker: TrackerConfig | None = None  # give every detection a track id (the optional 'track' extra)
    seq_nms: SeqNMSConfig | None = None  # rescore over the whole video, write at the end (files, not streams)


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

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        found = ", ".join(f"{name} {n}" for name, n in self.counts.most_common()) or "nothing"
        stopped = " (interrupted)" if self.interrupted else ""
        return (
            f"{self.frames} frames ({self.key_frames} key frames) in {self.seconds:.1f} s, {self.fps:.1f} fps"
            f"{stopped}; detections: {found}"
        )


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


def summary_exit_code(summary: DetectSummary) -> int:
    """The exit status of a finished run: 0, or 130 / 143 when Ctrl-C / SIGTERM stopped it."""
    if summary.terminated:
        return 143
    return 130 if summary.interrupted else 0


def class_ids_for(names: str | Sequence[str], class_names: Sequence[str]) -> list[int]:
    """'car,bicycle' -> their indices in `class_names`; an unknown name is an InputError listing the known ones."""
    wanted = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    unknown = [n for n in wanted if n not in class_names]
    if unknown:
        raise InputError(f"unknown class {', '.join(map(repr, unknown))}; known classes: {', '.join(class_names)}")
    return [list(class_names).index(n) for n in wanted]


def flow_coverage(frame_shape: tuple[int, ...], model: DFFModel) -> tuple[float, float]:
    """(h, w) fraction of the padded network input (hence of the feature map) that the frame covers."""
    meta = image_meta(*frame_shape[:2], model.config.preprocess)
    return meta.img_shape[0] / meta.pad_shape[0], meta.img_shape[1] / meta.pad_shape[1]


def detect_source(model: DFFModel, source: FrameSource, opts: DetectOptions) -> DetectSummary:
    """Run the model over `source` and write the requested outputs frame by frame; returns a summary.

    The output paths are checked first (OutputError if one is the source, two share a path, or one cannot be
    written), so a bad path fails before any frame is run; so are a stream with `opts.seq_nms` (InputError) and
    a missing 'track' extra with `opts.tracker` (DFFError). The tracker and Seq-NMS see every detection of the kept
    classes; `opts.score_thr` selects what is written after them.
    """
    check_outputs(
        [
            Output(opts.out_json, "out_json", make_parents=False) if opts.out_json is not None else None,
            Output(opts.out_video, "out_video", make_parents=False) if opts.out_video is not None else None,
            Output(opts.out_coco, "out_coco", make_parents=False) if opts.out_coco is not None else None,
            Output(opts.show_flow, "show_flow", folder=True) if opts.show_flow is not None else None,
        ],
        inputs=[source.name],
    )
    if opts.out_video is not None:
        video_format(opts.out_video)
    if opts.seq_nms is not None and source.is_stream:
        raise InputError(f"{source.name}: Seq-NMS needs the whole video, so it runs on files, not on streams")
    if opts.tracker is not None:
        require_track_extra()
    summary = DetectSummary()
    total = source.num_frames
    if opts.max_frames is not None:
        total = min(total, opts.max_frames) if total is not None else opts.max_frames
    pending: deque = deque()

    def images() -> Iterator[np.ndarray]:
        for f in islice(source, opts.max_frames):
            pending.append(f)
            yield f.image

    show_flow = opts.show_flow is not None
    if show_flow:
        Path(opts.show_flow).mkdir(parents=True, exist_ok=True)
    keep_ids = None if opts.class_ids is None else np.asarray(list(opts.class_ids), dtype=np.int64)
    offline = opts.seq_nms is not None
    held: list[tuple[int, float, FrameResult]] = []  # with Seq-NMS: (frame index, time, result) until the end
    start = time.perf_counter()
    with StopOnInterrupt() as stop, ExitStack() as stack:
        stack.callback(source.close)
        writers = None if offline else _Writers(opts, source.fps, model.class_names, stack)
        predicted = model.predict(images(), return_flow=True) if show_flow else model.predict(images())
        stack.callback(predicted.close)
        results = (_of_classes(r, keep_ids) for r in predicted)
        if opts.tracker is not None:
            results = track(results, opts.tracker)
        bar = stack.enter_context(_bar(opts, total, Path(source.name).name or source.name))
        for r in results:
            f = pending.popleft()
            if show_flow and r.flow is not None:
                size = (f.image.shape[1], f.image.shape[0])
                picture = flow_picture(r.flow, size, f.index, flow_coverage(f.image.shape, model), f.image)
                _write_png(Path(opts.show_flow) / f"flow_{f.index:06d}.png", picture)
            if writers is not None:
                writers.write(f, _above(r, opts.score_thr), summary)
            else:
                held.append((f.index, f.time_s, replace(r, flow=None)))
            summary.frames += 1
            summary.key_frames += int(r.is_key_frame)
            bar.update(1)
            if stop.requested:
                summary.interrupted = True
                summary.terminated = stop.signum == signal.SIGTERM
                break
        if offline:
            stack.close()  # the model and the decoding stop before Seq-NMS and the writing
            _write_rescored(model, source, opts, held, summary, stop)
    summary.seconds = time.perf_counter() - start
    return summary


def _bar(opts: DetectOptions, total: int | None, desc: str) -> tqdm:
    return tqdm(
        total=total, unit="frame", desc=desc, disable=not opts.progress, leave=opts.keep_bar, dynamic_ncols=True
    )


def _of_classes(r: FrameResult, keep_ids: np.ndarray | None) -> FrameResult:
    """`r` with only the detections of the classes `keep_ids` (all when None)."""
    return r if keep_ids is None else _subset(r, np.isin(r.labels, keep_ids))


def _above(r: FrameResult, score_thr: float) -> FrameResult:
    """`r` with only the detections scoring at least `score_thr`."""
    return _subset(r, r.scores >= score_thr)


def _subset(r: FrameResult, keep: np.ndarray) -> FrameResult:
    track_ids = None if r.track_ids is None else r.track_ids[keep]
    return replace(r, boxes=r.boxes[keep], scores=r.scores[keep], labels=r.labels[keep], track_ids=track_ids)


class _Writers:
    """The JSONL, COCO results and annotated video of one run, opened in `stack` (which closes them), written frame
    by frame (with the track trails)."""

    def __init__(self, opts: DetectOptions, fps: float, class_names: tuple[str, ...], stack: ExitStack) -> None:
        self.jsonl = stack.enter_context(JsonlWriter(opts.out_json)) if opts.out_json is not None else None
        self.coco = stack.enter_context(CocoResultsWriter(opts.out_coco)) if opts.out_coco is not None else None
        self.video = stack.enter_context(VideoWriter(opts.out_video, fps)) if opts.out_video is not None else None
        self.trails = TrackTrails()
        self.class_names = class_names

    def write(self, f: Frame, r: FrameResult, summary: DetectSummary) -> None:
        """One frame's kept detections into every output, and into the summary's counts."""
        if self.jsonl is not None:
            self.jsonl.write(_record(f.index, f.time_s, r, self.class_names))
        if self.coco is not None:
            self.coco.write(f.index, r.boxes, r.scores, r.labels, r.track_ids)
        if self.video is not None:
            self.video.write(_picture(f, r, self.class_names, self.trails))
        _count(summary, r, self.class_names)


def _record(index: int, time_s: float, r: FrameResult, class_names: tuple[str, ...]) -> dict:
    return detection_record(
        index, time_s, r.is_key_frame, r.boxes, r.scores, r.labels, class_names, r.key_reason, r.track_ids
    )


def _picture(f: Frame, r: FrameResult, class_names: tuple[str, ...], trails: TrackTrails) -> np.ndarray:
    picture = draw_detections(f.image, r.boxes, r.scores, r.labels, class_names, r.track_ids)
    if r.track_ids is not None:
        trails.update(r.boxes, r.track_ids)
        trails.draw(picture, r.track_ids)
    return draw_frame_marker(picture, f.index, r.is_key_frame)


def _count(summary: DetectSummary, r: FrameResult, class_names: tuple[str, ...]) -> None:
    names = [class_names[int(c)] for c in r.labels]
    summary.counts.update(names)
    summary.frames_with.update(set(names))


def _write_rescored(
    model: DFFModel,
    source: FrameSource,
    opts: DetectOptions,
    held: list[tuple[int, float, FrameResult]],
    summary: DetectSummary,
    stop: StopOnInterrupt,
) -> None:
    """Seq-NMS over the held results, then the JSONL and COCO results written once, atomically, then the video
    drawn while the source is decoded again (a Ctrl-C there stops it with the video complete so far)."""
    if not held:
        return
    rescored = [_above(r, opts.score_thr) for r in seq_nms_results([r for _, _, r in held], opts.seq_nms)]
    for r in rescored:
        _count(summary, r, model.class_names)
    if opts.out_json is not None:  # the writers' temporary files are moved into place when closed
        with JsonlWriter(opts.out_json) as jsonl:
            for (i, t, _), r in zip(held, rescored):
                jsonl.write(_record(i, t, r, model.class_names))
    if opts.out_coco is not None:
        with CocoResultsWriter(opts.out_coco) as coco:
            for (i, _, _), r in zip(held, rescored):
                coco.write(i, r.boxes, r.scores, r.labels, r.track_ids)
    if opts.out_video is None:
        return
    asked = stop.requested
    trails = TrackTrails()
    with ExitStack() as stack:
        stack.callback(source.close)
        video = stack.enter_context(VideoWriter(opts.out_video, source.fps))
        bar = stack.enter_context(_bar(opts, len(held), "video"))
        for f, r in zip(islice(source, len(held)), rescored):
            video.write(_picture(f, r, model.class_names, trails))
            bar.update(1)
            if stop.requested and not asked:
                summary.interrupted = True
                summary.terminated = stop.signum == signal.SIGTERM
                break


def _write_png(path: Path, picture: np.ndarray) -> None:
    """Write a PNG atomically (OSError on a full disk, never a silent failure as cv2.imwrite's)."""
    ok, data = cv2.imencode(".png", picture)
    if not ok:
        raise InputError(f"{path}: could not encode the flow picture")
    with atomic_path(path, suffix=".png") as tmp:
        tmp.write_bytes(data.tobytes())
