"""`dff detect SOURCE --weights W`: detections of a video, frame folder, glob or stream as JSONL and an mp4.

The decoding runs in a background thread (dff.io.sources), the model in the main thread, and every output is
written as each frame finishes, so memory is constant on any length of input. The first Ctrl-C stops after the
current frame with every output complete and playable; a second one aborts at once (outputs are still closed).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

import dff
from dff import zoo
from dff.api import DFFModel
from dff.config import PRESETS
from dff.data.transforms import padded_size, rescale_size
from dff.errors import DFFError, InputError
from dff.io.draw import draw_detections, draw_frame_marker, flow_picture
from dff.io.sources import FrameSource, open_source
from dff.io.writers import CocoResultsWriter, JsonlWriter, VideoWriter, detection_record

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


@dataclass
class DetectSummary:
    """What a run did: frames, key frames, wall time, kept detections per class, whether it was stopped early."""

    frames: int = 0
    key_frames: int = 0
    seconds: float = 0.0
    counts: Counter = field(default_factory=Counter)  # class name -> detections kept
    frames_with: Counter = field(default_factory=Counter)  # class name -> frames with at least one of them
    interrupted: bool = False

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        found = ", ".join(f"{name} {n}" for name, n in self.counts.most_common()) or "nothing"
        stopped = " (interrupted)" if self.interrupted else ""
        return (f"{self.frames} frames ({self.key_frames} key frames) in {self.seconds:.1f} s, {self.fps:.1f} fps"
                f"{stopped}; detections: {found}")


class _StopOnInterrupt:
    """First SIGINT sets `requested` (the loop stops after the current frame); a second one raises as usual."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("stopping after the current frame (Ctrl-C again to abort)")

    def __enter__(self) -> _StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def class_ids_for(names: str | Sequence[str], class_names: Sequence[str]) -> list[int]:
    """'car,bicycle' -> their indices in `class_names`; an unknown name is an InputError listing the known ones."""
    wanted = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    unknown = [n for n in wanted if n not in class_names]
    if unknown:
        raise InputError(f"unknown class {', '.join(map(repr, unknown))}; known classes: {', '.join(class_names)}")
    return [list(class_names).index(n) for n in wanted]


def flow_coverage(frame_shape: tuple[int, ...], model: DFFModel) -> tuple[float, float]:
    """(h, w) fraction of the padded network input (hence of the feature map) that the frame covers."""
    h, w = frame_shape[:2]
    cfg = model.config.preprocess
    (nw, nh), _ = rescale_size(w, h, cfg.scale)
    ph, pw = padded_size(nh, nw, cfg.size_divisor)
    return nh / ph, nw / pw


def detect_source(model: DFFModel, source: FrameSource, opts: DetectOptions) -> DetectSummary:
    """Run the model over `source` and write the requested outputs frame by frame; returns a summary."""
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
    start = time.perf_counter()
    with _StopOnInterrupt() as stop, ExitStack() as stack:
        stack.callback(source.close)
        jsonl = stack.enter_context(JsonlWriter(opts.out_json)) if opts.out_json is not None else None
        coco = stack.enter_context(CocoResultsWriter(opts.out_coco)) if opts.out_coco is not None else None
        video = stack.enter_context(VideoWriter(opts.out_video, source.fps)) if opts.out_video is not None else None
        results = model.predict(images(), return_flow=True) if show_flow else model.predict(images())
        stack.callback(results.close)
        bar = stack.enter_context(tqdm(total=total, unit="frame", desc=Path(source.name).name or source.name,
                                       disable=not opts.progress, dynamic_ncols=True))
        for r in results:
            f = pending.popleft()
            keep = r.scores >= opts.score_thr
            if keep_ids is not None:
                keep &= np.isin(r.labels, keep_ids)
            boxes, scores, labels = r.boxes[keep], r.scores[keep], r.labels[keep]
            if jsonl is not None:
                jsonl.write(detection_record(f.index, f.time_s, r.is_key_frame, boxes, scores, labels,
                                             model.class_names))
            if coco is not None:
                coco.write(f.index, boxes, scores, labels)
            if video is not None:
                picture = draw_detections(f.image, boxes, scores, labels, model.class_names)
                video.write(draw_frame_marker(picture, f.index, r.is_key_frame))
            if show_flow and r.flow is not None:
                size = (f.image.shape[1], f.image.shape[0])
                picture = flow_picture(r.flow, size, f.index, flow_coverage(f.image.shape, model))
                cv2.imwrite(str(Path(opts.show_flow) / f"flow_{f.index:06d}.png"), picture)
            summary.frames += 1
            summary.key_frames += int(r.is_key_frame)
            names = [model.class_names[int(c)] for c in labels]
            summary.counts.update(names)
            summary.frames_with.update(set(names))
            bar.update(1)
            if stop.requested:
                summary.interrupted = True
                break
    summary.seconds = time.perf_counter() - start
    return summary


def load_model(weights: str, preset: str | None, device: str) -> DFFModel:
    """A checkpoint file or zoo name (downloaded and verified on first use) loaded on `device`."""
    entry = zoo.ZOO.get(weights)
    if entry is not None and preset is not None and preset != entry.preset:
        raise DFFError(f"{weights} is a {entry.preset} checkpoint; drop --preset or use --preset {entry.preset}")
    path, zoo_preset = zoo.resolve(weights)
    return dff.load(path, preset=preset or zoo_preset, device=device)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect", help="detect objects in a video, frame folder, glob or stream",
        description="Detect objects with DFF. SOURCE is a video file, a folder of jpg/jpeg/png frames (any letter "
                    "case, natural order), a quoted glob, or a stream URL (rtsp/http/udp...). Without --out-json, "
                    "--out-video or --out-coco, the JSONL goes to stdout.",
    )
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("--weights", required=True,
                   help=f"checkpoint (.pth from mmtracking or our .safetensors) or zoo name: {', '.join(zoo.ZOO)}")
    p.add_argument("--preset", choices=sorted(PRESETS), help="architecture of a .pth checkpoint (default r50_dc5)")
    p.add_argument("--key-interval", type=int, metavar="N",
                   help="a key frame every N frames (default: the preset's, 10)")
    p.add_argument("--score-thr", type=float, default=0.5, metavar="S",
                   help="keep detections scoring at least S (default 0.5)")
    p.add_argument("--classes", metavar="NAMES", help="comma-separated class names to keep, e.g. car,bicycle")
    p.add_argument("--out-json", metavar="PATH", help="JSONL, one line per frame ('-' for stdout)")
    p.add_argument("--out-video", metavar="PATH", type=Path, help="annotated video (mp4) at the source frame rate")
    p.add_argument("--out-coco", metavar="PATH", type=Path, help="COCO results JSON (image_id = frame index)")
    p.add_argument("--show-flow", metavar="DIR", type=Path,
                   help="write a colour-wheel picture of the flow of each non-key frame to DIR")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--fps", type=float, help="frame rate of a frame folder or glob (default 25); overrides a video's")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.max_frames is not None and args.max_frames < 1:
        raise DFFError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.fps is not None and args.fps <= 0:
        raise DFFError(f"--fps must be > 0, got {args.fps}")
    source = open_source(args.source, fps=args.fps)
    model = load_model(args.weights, args.preset, args.device)
    if args.key_interval is not None:
        model.key_interval = args.key_interval
    outputs = (args.out_json, args.out_video, args.out_coco)
    opts = DetectOptions(
        score_thr=args.score_thr,
        class_ids=class_ids_for(args.classes, model.class_names) if args.classes else None,
        out_json="-" if all(o is None for o in outputs) else args.out_json,
        out_video=args.out_video, out_coco=args.out_coco, show_flow=args.show_flow,
        max_frames=args.max_frames, progress=not args.no_progress,
    )
    summary = detect_source(model, source, opts)
    print(f"{source.name}: {summary.describe()}", file=sys.stderr)
    return 130 if summary.interrupted else 0
