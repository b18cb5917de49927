"""Live sources that never fall behind: a stream URL, a camera, or a file paced at its frame rate.

A reader thread decodes continuously and keeps only the newest frame in a one-slot buffer. The consumer's
`next(source)` or `source.latest(timeout)` returns the newest frame not yet taken (waiting for one if need be);
a frame overwritten before it was taken is counted as dropped, never queued, so a consumer slower than the source
always works on a recent frame instead of falling further behind.

- Stream URLs (`dff.io.sources.is_stream`) are opened and decoded with `dff.io.sources`' code: the same open
  errors, and a stream that stops sending ends with the same one-line timeout error. Decoding uses slice threads
  only (frame threads would hold back one frame each).
- Cameras: `"0"` is `/dev/video0`; a `/dev/videoN` path is itself. They open through FFmpeg's v4l2 input.
- Anything else (a video file, a frame folder, a glob) is paced: frame k becomes available at `start + time_s`
  in real time (`start + k / fps` when `fps` is given), a stand-in for a camera. Its clock starts at the
  consumer's first request.

Each `LiveFrame` is a `dff.io.sources.Frame` (source index, stream time, image) with `arrival_s`: the
`time.monotonic()` at which it was decoded (streams, cameras) or scheduled (paced files). Counting starts at the
consumer's first request (frames a stream sent before that, while a model was loading, are neither received nor
dropped); after `close()`, `received == taken + dropped`.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import av

from dff.errors import InputError
from dff.io import sources
from dff.io.sources import (
    DEFAULT_FOLDER_FPS,
    Frame,
    FrameSource,
    _decode,
    _open_container,
    _reason,
    is_stream,
    open_source,
)

log = logging.getLogger(__name__)

_CAMERA_PATH = re.compile(r"^/dev/video\d+$")
_STOP_WAIT_S = 2.0  # how long close() waits for the reader thread (one blocked on a silent stream is left behind)

Kind = Literal["stream", "camera", "paced"]


@dataclass(frozen=True)
class LiveFrame(Frame):
    """A `Frame` with the `time.monotonic()` at which it arrived (decoded, or scheduled for paced files)."""

    arrival_s: float


def camera_device(source: str | os.PathLike) -> str | None:
    """The video device `source` names: `"0"` -> `/dev/video0`, a `/dev/videoN` path -> itself; else None.

    A number always means a camera (a folder named `0` is `./0`)."""
    text = os.fspath(source)
    if text.isascii() and text.isdigit():
        return f"/dev/video{int(text)}"
    return text if _CAMERA_PATH.match(text) else None


def is_live(source: str | os.PathLike) -> bool:
    """Whether `source` is live by nature (a stream URL or a camera); a file is live only when paced."""
    return is_stream(source) or camera_device(source) is not None


class LiveSource:
    """Frames of a live source, newest first: iterate it, or call `latest(timeout)`; `close()` stops the reader.

    Attributes: `name`, `fps` (the source's frame rate), `kind` ("stream", "camera" or "paced"), and the counters
    `received`, `taken`, `dropped` (see the module docstring).
    """

    def __init__(
        self,
        name: str,
        fps: float,
        kind: Kind,
        produce: Callable[[threading.Event, threading.Event], Iterator[Frame]],
    ) -> None:
        """`produce(started, stop)` yields the source's frames (`LiveFrame`s carry their own arrival time); it
        runs in the reader thread, `started` is set at the consumer's first request, `stop` at `close()`."""
        self.name = name
        self.fps = fps
        self.kind = kind
        self.num_frames = None  # how many frames are taken depends on the consumer's speed
        self.is_stream = kind != "paced"
        self._produce = produce
        self._cond = threading.Condition()
        self._slot: LiveFrame | None = None
        self._counting = False
        self._ended = False
        self._error: BaseException | None = None
        self._received = self._taken = self._dropped = 0
        self._started = threading.Event()  # the consumer's first request: counting (and a paced clock) start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name=f"live {name}", daemon=True)
        self._thread.start()

    @property
    def received(self) -> int:
        """Frames that arrived since the consumer's first request (plus the one waiting at that moment)."""
        return self._received

    @property
    def taken(self) -> int:
        """Frames handed to the consumer."""
        return self._taken

    @property
    def dropped(self) -> int:
        """Frames overwritten by a newer one (or left waiting at `close()`) before the consumer took them."""
        return self._dropped

    @property
    def ended(self) -> bool:
        """The source has no more frames: its end was reached (or it failed, or was closed) and none is waiting."""
        with self._cond:
            return self._ended and self._slot is None

    def latest(self, timeout: float | None = None) -> LiveFrame | None:
        """The newest frame not taken yet, waiting up to `timeout` seconds (None: for ever) for one to arrive.

        Returns None when none arrived in time or the source has ended (`ended` tells which); raises the reader's
        error (e.g. the stream's timeout InputError) once the last frame before it was taken.
        """
        with self._cond:
            if not self._counting:
                self._counting = True
                self._received = int(self._slot is not None)
                self._started.set()
            if not self._cond.wait_for(lambda: self._slot is not None or self._ended, timeout):
                return None
            if self._slot is not None:
                frame, self._slot = self._slot, None
                self._taken += 1
                return frame
            if self._error is not None:
                raise self._error
            return None

    def __iter__(self) -> Iterator[LiveFrame]:
        return self

    def __next__(self) -> LiveFrame:
        frame = self.latest()
        if frame is None:
            raise StopIteration
        return frame

    def close(self) -> None:
        """Stop the reader thread (promptly, unless it is blocked on a stream that stopped sending: that one ends
        at the stream timeout, on its own); a frame still waiting counts as dropped."""
        self._stop.set()
        self._started.set()
        self._thread.join(timeout=_STOP_WAIT_S)
        if self._thread.is_alive():
            log.debug("reader of %s is still waiting for the stream; it stops at the stream timeout", self.name)
        with self._cond:
            if self._slot is not None and self._counting:
                self._dropped += 1
            self._slot = None
            self._ended = True
            self._cond.notify_all()

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LiveSource({self.name!r}, kind={self.kind!r}, fps={self.fps:g})"

    def _read(self) -> None:
        frames = self._produce(self._started, self._stop)
        try:
            for frame in frames:
                arrival = frame.arrival_s if isinstance(frame, LiveFrame) else time.monotonic()
                live = LiveFrame(frame.index, frame.time_s, frame.image, arrival)
                with self._cond:
                    if self._stop.is_set():
                        return
                    if self._counting:
                        self._received += 1
                        self._dropped += self._slot is not None
                    self._slot = live
                    self._cond.notify_all()
        except BaseException as e:  # noqa: BLE001 - handed over to the consumer
            with self._cond:
                self._error = e
        finally:
            frames.close()
            with self._cond:
                self._ended = True
                self._cond.notify_all()


def open_live(source: str | os.PathLike, fps: float | None = None) -> LiveSource:
    """Open `source` live: a stream URL or a camera as it comes, anything else paced at its frame rate.

    `fps` overrides the frame rate (a paced file's: frame k at k / fps; a camera's requested rate; a stream's only
    where its frames carry no timestamps). Raises InputError at once
    if the source cannot be opened (missing file, camera or stream: the errors of `dff.io.sources`).
    """
    text = os.fspath(source)
    if is_stream(text):
        return _open_stream(text, fps)
    if camera_device(text) is not None:
        return open_camera(text, fps)
    return _open_paced(text, fps)


def open_camera(device: str | os.PathLike, fps: float | None = None) -> LiveSource:
    """Open a camera through FFmpeg's v4l2 input: an index (`"0"` -> /dev/video0) or a device path.

    Raises a one-line InputError naming the device when it is missing or is not a camera FFmpeg can read.
    """
    text = os.fspath(device)
    path = camera_device(text) or text
    name = path if path == text else f"camera {text} ({path})"
    if not os.path.exists(path):
        raise InputError(f"{name}: no such device (is the camera connected?)")
    options = {"framerate": f"{fps:g}"} if fps else {}
    timeout = sources.STREAM_TIMEOUT_S
    try:
        container = av.open(path, format="v4l2", options=options, timeout=(timeout, timeout))
    except av.error.FFmpegError as e:
        raise InputError(f"{name}: cannot open camera: {_reason(e)}") from None
    return _live_container(name, container, fps, "camera")


LOW_LATENCY = {"probesize": "32768", "analyzeduration": "100000"}
"""FFmpeg options of a live stream: a short probe (32 KB, 0.1 s instead of FFmpeg's 5 MB / 5 s limits), so that
decoding starts about 0.25 s after the first packets instead of 0.85 s, and the frames buffered meanwhile arrive as
a burst of about 7 instead of 22, which the newest-frame rule drops (measured on a 25 fps MPEG-TS feed of
bikes.mp4). `fflags nobuffer` was tried too: it drops the probed packets, so decoding starts only at the next key
frame (a second later on that feed)."""


def _open_stream(url: str, fps: float | None) -> LiveSource:
    return _live_container(url, _open_container(url, is_stream=True, options=LOW_LATENCY), fps, "stream")


def _live_container(name: str, container: av.container.InputContainer, fps: float | None, kind: Kind) -> LiveSource:
    if not container.streams.video:
        container.close()
        raise InputError(f"{name}: has no video stream")
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    source_fps = float(fps or (rate if rate else DEFAULT_FOLDER_FPS))

    def produce(started: threading.Event, stop: threading.Event) -> Iterator[Frame]:
        try:
            yield from _decode(container, name, source_fps, None, None, is_stream=True, thread_type="SLICE")
        finally:
            container.close()

    return LiveSource(name, source_fps, kind, produce)


def _open_paced(path: str, fps: float | None) -> LiveSource:
    return pace(open_source(path, fps), fps)


def pace(files: FrameSource, fps: float | None = None) -> LiveSource:
    """`files` (a video or frame source) as a live source, each frame available at its time (`fps` overrides the
    source's timestamps) in real time from the consumer's first request."""

    def produce(started: threading.Event, stop: threading.Event) -> Iterator[Frame]:
        started.wait()
        if stop.is_set():
            return
        start = time.monotonic()
        with files:
            for frame in files:
                time_s = frame.index / fps if fps else frame.time_s  # a video's own timestamps unless overridden
                due = start + time_s
                if stop.wait(max(0.0, due - time.monotonic())):
                    return
                yield LiveFrame(frame.index, time_s, frame.image, due)

    return LiveSource(files.name, files.fps, "paced", produce)
