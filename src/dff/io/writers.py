"""Result writers, one interface (`ResultWriter`: `write(result)`, `close()`), opened from one list of output
options (`Outputs`) by single sources and collections alike: JSONL (one flushed record per frame), the annotated
video (PyAV), COCO results JSON, MOTChallenge tracks, flow pictures.

Every writer is a context manager whose `close()` leaves a complete, valid file, also when the run is interrupted
(Ctrl-C, SIGTERM) part-way: the JSONL holds every finished frame, the video is finalised and playable, the COCO JSON
is a closed array. Each file is written under a temporary name in the target folder and moved into place on close,
so a half-written file never appears under the final name and an existing file is replaced only by a complete one;
a writer that received no frame leaves the existing file (if any) untouched and no temporary file behind. A
device, FIFO or /dev/stdout is written to as a stream instead, never replaced (`dff.io.atomic.OutputFile`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, fields
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar, runtime_checkable

import av
import cv2
import numpy as np

from dff.errors import InputError, OutputError
from dff.io.atomic import OutputFile, atomic_path
from dff.io.draw import TrackTrails, flow_picture
from dff.io.result import FrameResult


@runtime_checkable
class ResultWriter(Protocol):
    """Writes one frame's result at a time; `close()` leaves a complete file (module docstring)."""

    def write(self, result: FrameResult) -> None:
        """Add one frame (in order)."""

    def close(self) -> None:
        """Finish the output."""


class _ClosesOnExit:
    """`with writer:` closes the writer when the block ends (with or without an error)."""

    def __enter__(self: _W) -> _W:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # type: ignore[attr-defined]


_W = TypeVar("_W", bound=_ClosesOnExit)


def _named(error: OSError, path: Path) -> OSError:
    """`error` re-raised under the output's own name (not its temporary one), e.g. ENOSPC while writing it."""
    return OSError(error.errno, error.strerror or str(error), str(path))


class JsonlWriter(_ClosesOnExit):
    """Writes each frame's record (`FrameResult.to_record`) as one JSON line and flushes it; `path` '-' writes to
    stdout.

    A file is written as `.NAME.*.tmp.jsonl` beside `path` (flushed line by line, so it can be followed while the
    run goes on) and renamed to `path` on close if it holds at least one line.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self.lines = 0
        self._file: OutputFile | None = None
        if self.path == "-":
            self._f: IO[str] = sys.stdout
        else:
            self._file = OutputFile(self.path, make_parents=False)
            self._f = self._file.open("w")

    def write(self, result: FrameResult) -> None:
        self.write_record(result.to_record())

    def write_record(self, record: dict[str, Any]) -> None:
        """One JSON object as a line (the final summary line of a live run, say)."""
        try:
            self._f.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._f.flush()
        except BrokenPipeError:
            raise
        except OSError as e:
            raise _named(e, Path(self.path)) from None
        self.lines += 1

    def close(self) -> None:
        """Close the file and move it onto `path` (kept only if a line was written)."""
        if self._file is None or self._f.closed:
            return
        try:
            self._f.close()
        except OSError as e:
            self._file.discard()
            raise _named(e, self._file.path) from None
        if self.lines:
            self._file.commit()
        else:
            self._file.discard()


class CocoResultsWriter(_ClosesOnExit):
    """Streams a COCO results array (`FrameResult.coco_items`: image_id, category_id, bbox xywh, score, track_id when
    tracked) without holding it in memory.

    image_id: each result's dataset image id when it has one, else its 1-based frame number (the numbering of
    the project's COCO-VID files); category_id: `category_id(class index)` when given, else the class index + 1.
    """

    def __init__(self, path: str | os.PathLike, category_id: Callable[[int], int] | None = None) -> None:
        self._file = OutputFile(path, make_parents=False)
        self._f = self._file.open("w")
        self._f.write("[")
        self._first = True
        self.frames = 0
        self.category_id = category_id

    def write(self, result: FrameResult) -> None:
        for item in result.coco_items(self.category_id):
            try:
                self._f.write(("\n" if self._first else ",\n") + json.dumps(item, separators=(",", ":")))
            except OSError as e:
                raise _named(e, self._file.path) from None
            self._first = False
        self.frames += 1

    def close(self) -> None:
        """Close the array and move the file onto `path` (kept only if a frame was written)."""
        if self._f.closed:
            return
        try:
            self._f.write("\n]\n")
            self._f.close()
        except OSError as e:
            self._f.close()
            self._file.discard()
            raise _named(e, self._file.path) from None
        if self.frames:
            self._file.commit()
        else:
            self._file.discard()


class MotWriter(_ClosesOnExit):
    """MOTChallenge tracks, one line per tracked detection: `frame,id,x,y,w,h,conf,-1,-1,-1` (frame 1-based, box in
    pixels), as TrackEval and `dff convert-annotations --from mot` read them. Detections in no track (id -1) are left
    out; results without track ids are an error (run with tracking). Written whole on close, atomically."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.lines: list[str] = []
        self.frames = 0

    def write(self, result: FrameResult) -> None:
        if result.track_ids is None:
            raise InputError(f"{self.path}: MOTChallenge tracks need track ids (run with tracking, --track)")
        frame = int(result.frame_index) + 1
        for (x1, y1, x2, y2), score, track_id in zip(
            result.boxes.tolist(), result.scores.tolist(), result.track_ids.tolist()
        ):
            if track_id >= 0:
                self.lines.append(
                    f"{frame},{track_id},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{score:.5f},-1,-1,-1\n"
                )
        self.frames += 1

    def close(self) -> None:
        """Write the file (kept only if a frame was written)."""
        if self.frames:
            with atomic_path(self.path, suffix=".txt") as tmp:
                tmp.write_text("".join(self.lines), encoding="utf-8")
            self.frames = 0


MUXERS = {".mp4": "mp4", ".m4v": "mp4", ".mkv": "matroska", ".mov": "mov", ".avi": "avi", ".webm": "webm"}
# Encoders each container accepts, best first; the first this PyAV build has is used.
_CODECS = {
    "webm": ("libvpx-vp9", "libaom-av1", "libsvtav1"),
    "mp4": ("libx264", "mpeg4"),
    "matroska": ("libx264", "mpeg4"),
    "mov": ("libx264", "mpeg4"),
    "avi": ("libx264", "mpeg4"),
}
_CODEC_OPTIONS = {
    "libx264": {"crf": "20", "preset": "veryfast"},
    "libvpx-vp9": {"crf": "32", "b": "0", "deadline": "realtime", "cpu-used": "8"},
    "libaom-av1": {"crf": "32", "b": "0", "cpu-used": "8"},
    "libsvtav1": {"crf": "35", "preset": "10"},
}


def _can_encode(codec: str) -> bool:
    try:
        av.codec.Codec(codec, "w")
        return True
    except (av.error.FFmpegError, ValueError):
        return False


def video_codec() -> str:
    """libx264 when this PyAV build can encode it, else MPEG-4 Part 2."""
    return "libx264" if _can_encode("libx264") else "mpeg4"


def video_format(path: str | os.PathLike) -> tuple[str, str]:
    """(muxer, encoder) for a video file name; OutputError for an unknown extension or a container with no encoder."""
    path = Path(path)
    muxer = MUXERS.get(path.suffix.lower())
    if muxer is None:
        raise OutputError(
            f"{path}: unknown video extension {path.suffix or '(none)'!r}; use one of {', '.join(sorted(MUXERS))}"
        )
    for codec in _CODECS[muxer]:
        if _can_encode(codec):
            return muxer, codec
    raise OutputError(f"{path}: this PyAV build has no encoder for {path.suffix} ({', '.join(_CODECS[muxer])})")


class VideoWriter(_ClosesOnExit):
    """Encodes BGR frames to a video with PyAV at a constant frame rate, yuv420p; the container follows the extension
    (`video_format`: libx264 or mpeg4 in mp4/mkv/mov/avi, VP9 or AV1 in webm).

    The size is fixed by the first frame, rounded up to even numbers (yuv420p needs them; the extra row/column is
    black). A later frame of another size is scaled to fit and letterboxed, so one playable file always results.
    """

    def __init__(self, path: str | os.PathLike, fps: float, codec: str | None = None) -> None:
        muxer, default_codec = video_format(path)
        self._file = OutputFile(path, make_parents=False)
        self.fps = fps
        self.codec = codec or default_codec
        self.num_frames = 0
        self._next_pts = 0
        self.frame_size: tuple[int, int] | None = None  # (width, height) of the first frame
        self.size: tuple[int, int] | None = None  # (width, height) encoded: frame_size rounded up to even
        self._rate = Fraction(25)
        try:
            self._container = av.open(str(self._file.name), mode="w", format=muxer)
        except (av.error.FFmpegError, ValueError) as e:
            self._file.discard()
            raise InputError(f"{path}: cannot write a video there ({e})") from None
        self._stream: av.video.stream.VideoStream | None = None
        self._closed = False

    def _open_stream(self, w: int, h: int) -> None:
        self._rate = Fraction(self.fps).limit_denominator(100000) if self.fps > 0 else Fraction(25)
        stream = self._container.add_stream(self.codec, rate=self._rate)
        stream.width, stream.height = w + w % 2, h + h % 2
        stream.pix_fmt = "yuv420p"
        if self.codec in _CODEC_OPTIONS:
            stream.options = _CODEC_OPTIONS[self.codec]
        else:
            stream.bit_rate = max(1_000_000, int(stream.width * stream.height * float(self._rate) * 0.15))
        self._stream = stream
        self.frame_size = (w, h)
        self.size = (stream.width, stream.height)

    def write(self, image: np.ndarray, pts: int | None = None) -> None:
        """Append one uint8 BGR (H, W, 3) frame; `pts`: its number at the video's rate (default: the next one; a
        larger one leaves the previous frame on screen until it, as a live run that dropped frames needs)."""
        if self._stream is None:
            self._open_stream(image.shape[1], image.shape[0])
        frame = av.VideoFrame.from_ndarray(_fit(image, self.frame_size, self.size), format="bgr24")
        if pts is not None and pts < self._next_pts:
            raise InputError(f"{self._file.path}: frame number {pts} comes after {self._next_pts - 1}")
        frame.pts = self._next_pts if pts is None else pts
        self._next_pts = frame.pts + 1
        frame.time_base = 1 / self._rate
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except (av.error.FFmpegError, OSError) as e:
            raise _named(_as_os_error(e), self._file.path) from None
        self.num_frames += 1

    def close(self) -> None:
        """Flush the encoder and finalise the file (also after an interrupt); no frames: no file.

        If finalising fails (a full disk), the temporary file is removed and an existing file is left as it was.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self._stream is not None:
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
            self._container.close()
        except (av.error.FFmpegError, OSError) as e:
            _close_quietly(self._container)
            self._file.discard()
            raise _named(_as_os_error(e), self._file.path) from None
        except BaseException:
            _close_quietly(self._container)
            self._file.discard()
            raise
        if self.num_frames:
            self._file.commit()
        else:
            self._file.discard()


def _as_os_error(error: Exception) -> OSError:
    if isinstance(error, OSError):
        return error
    return OSError(getattr(error, "errno", None) or 0, getattr(error, "strerror", None) or str(error))


def _close_quietly(container: av.container.OutputContainer) -> None:
    try:
        container.close()
    except (av.error.FFmpegError, OSError):
        pass


def _fit(image: np.ndarray, frame_size: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """`image` scaled to fit `frame_size` (w, h) if it differs (centred, letterboxed), on a black canvas of `size`."""
    fw, fh = frame_size
    ih, iw = image.shape[:2]
    y = x = 0
    if (iw, ih) != (fw, fh):
        s = min(fw / iw, fh / ih)
        image = cv2.resize(image, (max(1, round(iw * s)), max(1, round(ih * s))), interpolation=cv2.INTER_AREA)
        ih, iw = image.shape[:2]
        y, x = (fh - ih) // 2, (fw - iw) // 2
    if (iw, ih) == size:
        return np.ascontiguousarray(image)
    canvas = np.zeros((size[1], size[0], 3), np.uint8)
    canvas[y : y + ih, x : x + iw] = image
    return canvas


class AnnotatedVideoWriter(_ClosesOnExit):
    """The annotated video: each result drawn on its frame (`FrameResult.plot`, with the tracks' trails) and
    encoded by `VideoWriter` at its frame's place in the source (frames a live run dropped leave the previous
    picture on screen, so the video plays in real time); the results must keep their frames
    (`RunOptions(keep_frames=True)`)."""

    def __init__(self, path: str | os.PathLike, fps: float) -> None:
        self.video = VideoWriter(path, fps)
        self.trails = TrackTrails()
        self._first: int | None = None

    def write(self, result: FrameResult) -> None:
        if self._first is None:
            self._first = result.frame_index
        self.video.write(result.plot(trails=self.trails), pts=result.frame_index - self._first)

    def close(self) -> None:
        self.video.close()


class FlowPictureWriter(_ClosesOnExit):
    """One PNG per non-key frame, `flow_NNNNNN.png` in `folder`: the flow the frame was propagated with
    (`dff.io.draw.flow_picture`); the results must keep their frames and flow (`keep_frames`, `return_flow`).
    `coverage(image shape)` is the (h, w) share of the feature map that the frame covers (the rest is padding)."""

    def __init__(self, folder: str | os.PathLike, coverage: Callable[[tuple[int, ...]], tuple[float, float]]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.coverage = coverage

    def write(self, result: FrameResult) -> None:
        if result.flow is None:
            return
        if result.image is None:
            raise InputError(f"{self.folder}: flow pictures need the frames (run with keep_frames=True)")
        image = result.image
        picture = flow_picture(
            result.flow, (image.shape[1], image.shape[0]), result.frame_index, self.coverage(image.shape), image
        )
        ok, data = cv2.imencode(".png", picture)
        if not ok:
            raise InputError(f"{self.folder}: could not encode the flow picture of frame {result.frame_index}")
        with atomic_path(self.folder / f"flow_{result.frame_index:06d}.png", suffix=".png") as tmp:
            tmp.write_bytes(data.tobytes())

    def close(self) -> None:
        """Nothing to finish: each picture was written whole."""


@dataclass(frozen=True)
class Outputs:
    """Where a run's results go, one field per kind of output (None: not written); the same list for one source
    (`dff detect SOURCE --out-*`) and for each video of a collection (`Outputs.in_folder`).

    json: JSONL, '-' for stdout; video: the annotated video (.mp4, .mkv, .mov, .avi, .webm); coco: COCO results
    JSON; mot: MOTChallenge tracks (needs tracking); flow: a folder of flow pictures of the non-key frames.
    """

    json: str | Path | None = None
    video: str | Path | None = None
    coco: str | Path | None = None
    mot: str | Path | None = None
    flow: str | Path | None = None

    KINDS = ("json", "video", "coco", "mot", "flow")
    IN_FOLDER = {
        "json": "detections.jsonl",
        "video": "detections.mp4",
        "coco": "coco_results.json",
        "mot": "tracks.txt",
        "flow": "flow",
    }

    @classmethod
    def in_folder(cls, folder: str | os.PathLike, kinds: Sequence[str]) -> Outputs:
        """The outputs of one video of a collection: `folder / IN_FOLDER[kind]` for each kind asked."""
        unknown = [k for k in kinds if k not in cls.KINDS]
        if unknown:
            raise InputError(f"unknown output kind {', '.join(unknown)}; choose from {', '.join(cls.KINDS)}")
        return cls(**{k: Path(folder) / cls.IN_FOLDER[k] for k in kinds})

    def given(self) -> dict[str, str | Path]:
        """kind -> path of every output asked for, in `KINDS` order."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @property
    def needs_frames(self) -> bool:
        """Whether a writer draws on the frames (the video, the flow pictures)."""
        return self.video is not None or self.flow is not None

    def open(
        self,
        stack: ExitStack,
        fps: float,
        coverage: Callable[[tuple[int, ...]], tuple[float, float]],
        category_id: Callable[[int], int] | None = None,
    ) -> dict[str, ResultWriter]:
        """kind -> an open writer for each output asked for, entered in `stack` (which closes them)."""
        make = {
            "json": lambda p: JsonlWriter(p),
            "video": lambda p: AnnotatedVideoWriter(p, fps),
            "coco": lambda p: CocoResultsWriter(p, category_id),
            "mot": lambda p: MotWriter(p),
            "flow": lambda p: FlowPictureWriter(p, coverage),
        }
        return {kind: stack.enter_context(make[kind](path)) for kind, path in self.given().items()}
