"""Result writers: JSONL (one flushed line per frame), a video encoded with PyAV, and COCO-results JSON.

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
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import av
import cv2
import numpy as np

from dff.errors import InputError, OutputError
from dff.io.atomic import OutputFile


def detection_record(
    frame: int,
    time_s: float,
    key: bool,
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    class_names: tuple[str, ...],
    key_reason: str | None = None,
    track_ids: np.ndarray | None = None,
) -> dict[str, Any]:
    """The JSON object of one frame: frame, time_s, key, key_reason (why it is a key frame: "first", "interval",
    "cut", "residual", ...; null for other frames) and detections (bbox xyxy in original pixels; with `track_ids`
    also each one's track_id, -1 for none)."""
    detections = [
        {
            "bbox": [round(float(v), 2) for v in box],
            "score": round(float(s), 5),
            "label": class_names[int(c)],
            "class_id": int(c),
        }
        for box, s, c in zip(boxes, scores, labels)
    ]
    if track_ids is not None:
        for d, t in zip(detections, track_ids):
            d["track_id"] = int(t)
    return {
        "frame": int(frame),
        "time_s": round(float(time_s), 6),
        "key": bool(key),
        "key_reason": key_reason,
        "detections": detections,
    }


def _named(error: OSError, path: Path) -> OSError:
    """`error` re-raised under the output's own name (not its temporary one), e.g. ENOSPC while writing it."""
    return OSError(error.errno, error.strerror or str(error), str(path))


class JsonlWriter:
    """Writes one JSON object per line and flushes it; `path` '-' writes to stdout.

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

    def write(self, record: dict[str, Any]) -> None:
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

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CocoResultsWriter:
    """Streams a COCO results array ([{image_id, category_id, bbox xywh, score}]) without holding it in memory.

    `image_id` is the frame index plus `image_id_offset`; `category_id` is the class index + 1 (COCO ids start at 1);
    `track_id` is an extra field when the frame's track ids are given.
    """

    def __init__(self, path: str | os.PathLike, image_id_offset: int = 0) -> None:
        self._file = OutputFile(path, make_parents=False)
        self._f = self._file.open("w")
        self._f.write("[")
        self._first = True
        self.frames = 0
        self.image_id_offset = image_id_offset

    def write(
        self,
        frame: int,
        boxes: np.ndarray,
        scores: np.ndarray,
        labels: np.ndarray,
        track_ids: np.ndarray | None = None,
    ) -> None:
        ids = [None] * len(scores) if track_ids is None else [int(t) for t in track_ids]
        for (x1, y1, x2, y2), s, c, t in zip(boxes.tolist(), scores.tolist(), labels.tolist(), ids):
            item = {
                "image_id": int(frame) + self.image_id_offset,
                "category_id": int(c) + 1,
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "score": round(s, 5),
            }
            if t is not None:
                item["track_id"] = t
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

    def __enter__(self) -> CocoResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


class VideoWriter:
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

    def write(self, image: np.ndarray) -> None:
        """Append one uint8 BGR (H, W, 3) frame."""
        if self._stream is None:
            self._open_stream(image.shape[1], image.shape[0])
        frame = av.VideoFrame.from_ndarray(_fit(image, self.frame_size, self.size), format="bgr24")
        frame.pts = self.num_frames
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

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
