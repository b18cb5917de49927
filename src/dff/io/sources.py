"""Frame sources: a video file, a folder of images, a glob or a stream URL, decoded in a background thread.

`open_source` checks the input at once (missing file, empty folder, unreadable container) and returns a
`FrameSource`; iterating it yields `Frame`s in order while a thread decodes ahead into a bounded queue, so memory
stays constant on arbitrarily long input. A damaged video yields every frame decoded before the damage, then
raises `InputError` saying at which frame it stopped.
"""

from __future__ import annotations

import glob
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import av
import numpy as np

from dff.errors import InputError
from dff.io.image import read_image

log = logging.getLogger(__name__)
T = TypeVar("T")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp")
DEFAULT_FOLDER_FPS = 25.0
QUEUE_SIZE = 8

STREAM_TIMEOUT_S = 30.0  # a stream that sends nothing for this long (opening or reading) has "timed out"
# Formats whose header duration is exact, so that a video ending early can be detected without a frame count.
_EXACT_DURATION_FORMATS = ("matroska", "webm", "mov", "mp4")


@dataclass(frozen=True)
class Frame:
    """One frame: its 0-based position in the source, time in seconds since the first frame (None when unknown:
    frames handed over as bare arrays), BGR image."""

    index: int
    time_s: float | None
    image: np.ndarray  # uint8 (H, W, 3) BGR


class FrameSource:
    """An iterable of `Frame`s with `fps`, `num_frames` (None if unknown), a display `name` and `is_stream` (a live
    stream URL, which cannot be read twice).

    Each iteration decodes from the start in a background thread; `close()` (or leaving a `with` block) stops it.
    """

    def __init__(
        self,
        name: str,
        fps: float,
        num_frames: int | None,
        produce: Callable[[], Iterator[Frame]],
        is_stream: bool = False,
    ) -> None:
        self.name = name
        self.is_stream = is_stream
        self.fps = fps
        self.num_frames = num_frames
        self._produce = produce
        self._active: list[Iterator[Frame]] = []

    def __iter__(self) -> Iterator[Frame]:
        it = prefetch(self._produce, QUEUE_SIZE, f"decode {self.name}")
        self._active.append(it)
        return it

    def close(self) -> None:
        """Stop every decoding thread started by this source."""
        while self._active:
            self._active.pop().close()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FrameSource({self.name!r}, fps={self.fps:g}, num_frames={self.num_frames})"


def open_source(source: str | os.PathLike, fps: float | None = None) -> FrameSource:
    """Open a video file, an image file (one frame), an image folder, a glob pattern or a stream URL.

    `fps` sets the frame rate of image folders and globs (default 25) and overrides a video's own rate.
    Raises InputError if the source does not exist, holds no images or cannot be opened.
    """
    text = os.fspath(source)
    if _is_url(text):
        return _video_source(text, fps, is_stream=True)
    path = Path(text).expanduser()
    if path.is_dir():
        files = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise InputError(f"{path}: folder has no images ({', '.join(IMAGE_SUFFIXES)}, any letter case)")
        return image_source(str(path), files, fps)
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        return image_source(str(path), [path], fps)
    if path.is_file():
        return _video_source(str(path), fps, is_stream=False)
    if glob.has_magic(text):
        files = [Path(p) for p in glob.glob(os.path.expanduser(text)) if Path(p).suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise InputError(f"{text}: pattern matches no images ({', '.join(IMAGE_SUFFIXES)})")
        return image_source(text, files, fps)
    raise InputError(f"{text}: no such file or folder")


def natural_key(path: Path) -> list[object]:
    """Sort key that orders 'img2' before 'img10' (digit runs compare as numbers, the rest case-insensitively)."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", path.name) if t]


def is_stream(source: str | os.PathLike) -> bool:
    """Whether `open_source` would open `source` as a live stream (a URL of one of `STREAM_SCHEMES`)."""
    return _is_url(os.fspath(source))


def _is_url(text: str) -> bool:
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", text)
    return bool(m) and m.group(1).lower() in STREAM_SCHEMES


def image_source(name: str, files: list[Path], fps: float | None) -> FrameSource:
    """The images `files` as one video, in natural order (`fps` default 25); read when iterated."""
    files = sorted(files, key=natural_key)
    rate = float(fps or DEFAULT_FOLDER_FPS)

    def produce() -> Iterator[Frame]:
        for i, f in enumerate(files):
            yield Frame(i, i / rate, read_image(f))

    return FrameSource(name, rate, len(files), produce)


def _open_container(name: str, is_stream: bool, options: dict[str, str] | None = None) -> av.container.InputContainer:
    start = time.monotonic()
    timeout = (STREAM_TIMEOUT_S, STREAM_TIMEOUT_S) if is_stream else None
    try:
        container = av.open(name, mode="r", timeout=timeout, options=options or {})
    except av.error.FFmpegError as e:
        if is_stream and time.monotonic() - start >= STREAM_TIMEOUT_S:
            raise InputError(f"{name}: timed out: the stream sent nothing for {STREAM_TIMEOUT_S:g} s") from None
        mp4 = Path(name).suffix.lower() in (".mp4", ".mov", ".m4v")
        hint = " (truncated mp4? its index is written last)" if mp4 and isinstance(e, av.error.InvalidDataError) else ""
        raise InputError(f"{name}: cannot open video: {_reason(e)}{hint}") from None
    if not container.streams.video:
        container.close()
        raise InputError(f"{name}: has no video stream")
    return container


def _video_source(name: str, fps: float | None, is_stream: bool) -> FrameSource:
    container = _open_container(name, is_stream)
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    source_fps = float(fps or (rate if rate else DEFAULT_FOLDER_FPS))
    declared = int(stream.frames) if stream.frames and stream.frames > 0 else None
    exact_duration = container.duration if any(f in container.format.name for f in _EXACT_DURATION_FORMATS) else None
    first = [container]

    def produce() -> Iterator[Frame]:
        c = first.pop() if first else _open_container(name, is_stream)
        try:
            yield from _decode(c, name, source_fps, declared, None if is_stream else exact_duration, is_stream)
        finally:
            c.close()

    return FrameSource(name, source_fps, None if is_stream else declared, produce, is_stream=is_stream)


def _decode(
    container: av.container.InputContainer,
    name: str,
    fps: float,
    declared: int | None,
    duration_us: int | None,
    is_stream: bool = False,
    thread_type: str = "AUTO",
) -> Iterator[Frame]:
    """Decode the first video stream; raise InputError at damage or when the video ends before it says it does.

    `thread_type` "AUTO" decodes fastest; "SLICE" adds no frames of delay (frame threading holds one per thread).
    """
    stream = container.streams.video[0]
    stream.thread_type = thread_type
    index, t0, last_t = 0, None, 0.0
    last_frame_at = time.monotonic()
    try:
        for vf in container.decode(stream):
            last_frame_at = time.monotonic()
            t = vf.time
            if t is None:
                t_rel = index / fps
            else:
                t0 = t if t0 is None else t0
                t_rel = float(t - t0)
            last_t = t_rel
            yield Frame(index, t_rel, vf.to_ndarray(format="bgr24"))
            index += 1
    except av.error.FFmpegError as e:
        # ExitError is PyAV's read timeout; the clock alone misses it when the decoder then flushed frames it held
        if is_stream and (isinstance(e, av.error.ExitError) or time.monotonic() - last_frame_at >= STREAM_TIMEOUT_S):
            raise InputError(
                f"{name}: timed out: the stream sent nothing for {STREAM_TIMEOUT_S:g} s after frame {index}; "
                f"frames 0-{index - 1} were read"
                if index
                else f"{name}: timed out: the stream sent no frame for {STREAM_TIMEOUT_S:g} s"
            ) from None
        what = "stream failed" if is_stream else "video is damaged"
        raise InputError(
            f"{name}: {what}; decoding stopped at frame {index} ({_reason(e)}); frames 0-{index - 1} were read"
            if index
            else f"{name}: {what}; no frame could be decoded ({_reason(e)})"
        ) from None
    if declared is not None and index < declared:
        raise InputError(f"{name}: video ended at frame {index} of the {declared} it declares (truncated or damaged)")
    if declared is None and duration_us and index:
        declared_s = duration_us / 1e6
        if last_t + 1.0 < declared_s - 1.0:
            raise InputError(
                f"{name}: video ended at frame {index} ({last_t:.2f} s) of the {declared_s:.2f} s it declares "
                "(truncated or damaged)"
            )
        if declared_s - last_t > 2.0 / fps:  # a complete video's last frame starts one frame interval before the end
            log.warning(
                "%s: video ended at frame %d (%.2f s), %.2f s before the %.2f s its container declares "
                "(cut short, or another stream is longer); every decoded frame was used",
                name,
                index,
                last_t,
                declared_s - last_t,
                declared_s,
            )


def _reason(e: av.error.FFmpegError) -> str:
    return e.strerror or str(e)


_END = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(produce: Callable[[], Iterator[T]], size: int, thread_name: str) -> Iterator[T]:
    """Run `produce()` in a daemon thread that stays at most `size` items ahead; re-raise its errors here."""
    q: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        gen = produce()
        try:
            for item in gen:
                if not put(item):
                    return
            put(_END)
        except BaseException as e:  # noqa: BLE001 - handed over to the consumer thread
            put(_Failure(e))
        finally:
            gen.close()

    thread = threading.Thread(target=work, name=thread_name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join(timeout=10.0)
        if thread.is_alive():
            log.warning("decoder thread of %s did not stop in time", thread_name)
