"""A real-time stream sender: a video (or frame folder) re-encoded as MPEG-TS and sent to a URL at its frame rate.

    python -m dff.live.sender SOURCE udp://127.0.0.1:5000 [--fps 25] [--loop] [--seconds S]

Frame k (counted across loops) has PTS k in a 1/fps time base and is sent at `start + k / fps` (or as soon as it
is encoded, if the machine falls behind; `max_late_s` reports by how much). The command prints one JSON line when
the first frame is due (`start_monotonic`, on this machine's `time.monotonic()` clock, and `start_unix`) and one when
it ends (`frames_sent`, `max_late_s`), so that a receiver on the same machine can tell when a frame it decoded was
sent: at `start_monotonic + time_s`, `time_s` being the frame's stream time (`dff.io.sources.Frame.time_s`, which
counts from the first frame decoded: start the receiver first). Ctrl-C or SIGTERM stop it cleanly.

The video is encoded with h264 (libx264, ultrafast, zero-latency tuning) when available, else MPEG-4 part 2 or
MPEG-2, a key frame every second and no B-frames. The MPEG-TS muxer writes each frame's PES length and flushes
every packet, so a receiver can decode a frame as soon as its last packet arrives. UDP URLs get `pkt_size=1316`
(seven TS packets a datagram) unless they set it. As a library: `send(...)` (blocking) or `StreamSender` (a thread).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from fractions import Fraction

import av
import cv2
import numpy as np

from dff.errors import DFFError, OutputError
from dff.io.sources import FrameSource, open_source

ENCODERS = ("libx264", "h264", "mpeg4", "mpeg2video")  # the first one this FFmpeg build has is used
MUXER_OPTIONS = {"flush_packets": "1", "omit_video_pes_length": "0"}


@dataclass(frozen=True)
class SendReport:
    """What a sender did: frame k was due at `start_monotonic + k / fps` and sent then or up to `max_late_s` later."""

    url: str
    fps: float
    codec: str
    width: int
    height: int
    start_monotonic: float
    start_unix: float
    frames_sent: int = 0
    max_late_s: float = 0.0


def send(
    source: str,
    url: str,
    fps: float | None = None,
    loop: bool = False,
    seconds: float | None = None,
    stop: threading.Event | None = None,
    on_start: Callable[[SendReport], None] | None = None,
) -> SendReport:
    """Send `source` to `url` in real time until it ends (never with `loop`), `seconds` of stream time were sent,
    or `stop` is set. `on_start(report)` is called when the first frame is due. Raises InputError for a source
    that cannot be read and OutputError for a URL that cannot be written."""
    frames = open_source(source)
    rate = Fraction(float(fps or frames.fps)).limit_denominator(1001)
    stop = stop or threading.Event()
    try:
        output = av.open(_with_packet_size(url), "w", format="mpegts", options=MUXER_OPTIONS)
    except av.error.FFmpegError as e:
        frames.close()
        raise OutputError(f"{url}: cannot send to it ({e.strerror or e})") from None
    report: SendReport | None = None
    try:
        stream = None
        for k, image in enumerate(_images(frames, loop)):
            if seconds is not None and k / rate >= seconds:
                break
            if stream is None:
                stream = _add_stream(output, rate, image.shape[1] & ~1, image.shape[0] & ~1)
                codec, size = stream.codec_context.name, (stream.width, stream.height)
                report = SendReport(url, float(rate), codec, *size, time.monotonic(), time.time())
                if on_start is not None:
                    on_start(report)
            due = report.start_monotonic + float(k / rate)
            if stop.wait(max(0.0, due - time.monotonic())):
                break
            late = time.monotonic() - due
            frame = av.VideoFrame.from_ndarray(_fit(image, stream.width, stream.height), format="bgr24")
            frame.pts, frame.time_base = k, 1 / rate
            try:
                for packet in stream.encode(frame):
                    output.mux(packet)
            except av.error.FFmpegError as e:
                raise OutputError(f"{url}: sending failed at frame {k} ({e.strerror or e})") from None
            report = replace(report, frames_sent=k + 1, max_late_s=max(report.max_late_s, late))
        if stream is not None:
            for packet in stream.encode(None):
                output.mux(packet)
    finally:
        output.close()
        frames.close()
    if report is None:
        raise DFFError(f"{source}: nothing was sent (no frame, or stopped before the first)")
    return report


def _images(frames: FrameSource, loop: bool) -> Iterator[np.ndarray]:
    """The source's images, over and over with `loop`."""
    while True:
        count = 0
        for frame in frames:
            count += 1
            yield frame.image
        if not loop or count == 0:
            return


def _with_packet_size(url: str) -> str:
    if not url.lower().startswith("udp://") or "pkt_size=" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}pkt_size=1316"


def _encoder() -> str:
    for name in ENCODERS:
        try:
            av.codec.Codec(name, "w")
            return name
        except av.codec.codec.UnknownCodecError:
            continue
    raise DFFError(f"this FFmpeg build has none of the video encoders {', '.join(ENCODERS)}")


def _add_stream(output: av.container.OutputContainer, rate: Fraction, width: int, height: int) -> av.VideoStream:
    name = _encoder()
    stream = output.add_stream(name, rate=rate)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.gop_size = max(1, round(rate))
    if name == "libx264":
        stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
    else:
        stream.codec_context.max_b_frames = 0
        stream.codec_context.bit_rate = max(1_000_000, width * height * round(rate) // 4)
    return stream


def _fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """The image cropped to the stream's even size, or resized to it if the source changed size."""
    h, w = image.shape[:2]
    if (w & ~1, h & ~1) == (width, height):
        return np.ascontiguousarray(image[:height, :width])
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


class StreamSender:
    """`send` in a background thread: `start()` returns once the first frame is due (raising any error that came
    before it), `stop()` ends it and returns the `SendReport`; also a context manager.

    `sent_at(time_s)`: the `time.monotonic()` at which the frame of stream time `time_s` was due.
    """

    def __init__(
        self, source: str, url: str, fps: float | None = None, loop: bool = False, seconds: float | None = None
    ) -> None:
        self._args = (source, url, fps, loop, seconds)
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"send {url}", daemon=True)
        self._error: BaseException | None = None
        self.report: SendReport | None = None  # the start report once started, the final one once ended

    def start(self) -> StreamSender:
        """Start sending; return when the first frame is due."""
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error
        return self

    def sent_at(self, time_s: float) -> float:
        """When the frame of stream time `time_s` was due (`time.monotonic()` clock)."""
        assert self.report is not None, "not started"
        return self.report.start_monotonic + time_s

    def wait(self, timeout: float | None = None) -> SendReport | None:
        """Wait up to `timeout` seconds for the end (the source's, or `seconds`'); the final report, or None."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            return None
        if self._error is not None:
            raise self._error
        return self.report

    def stop(self) -> SendReport | None:
        """Stop sending (the stream is closed cleanly) and return the final report."""
        self._stop.set()
        return self.wait() if self._thread.ident is not None else None

    def __enter__(self) -> StreamSender:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        source, url, fps, loop, seconds = self._args

        def started(report: SendReport) -> None:
            self.report = report
            self._started.set()

        try:
            self.report = send(source, url, fps, loop, seconds, self._stop, started)
        except BaseException as e:  # noqa: BLE001 - handed over to start() / wait()
            self._error = e
        finally:
            self._started.set()


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module docstring); errors are one line on stderr and exit status 2."""
    parser = argparse.ArgumentParser(
        prog="python -m dff.live.sender", description="Send a video as a real-time MPEG-TS stream."
    )
    parser.add_argument("source", help="video file or frame folder")
    parser.add_argument("url", help="where to send, e.g. udp://127.0.0.1:5000")
    parser.add_argument("--fps", type=float, help="frames per second (default: the source's rate)")
    parser.add_argument("--loop", action="store_true", help="start again at the end, until stopped")
    parser.add_argument("--seconds", type=float, help="stop after this many seconds of stream")
    args = parser.parse_args(argv)
    if args.fps is not None and not args.fps > 0:
        parser.error("--fps must be > 0")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def started(report: SendReport) -> None:
        print(json.dumps({"event": "start", **asdict(report)}), flush=True)

    try:
        report = send(args.source, args.url, args.fps, args.loop, args.seconds, stop, started)
    except DFFError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"event": "end", **asdict(report)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
