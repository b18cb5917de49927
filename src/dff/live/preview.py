"""A browser preview of a live run that never slows it down: the newest annotated frame and the running figures.

    with Preview(port=8080) as preview:          # port 0: any free port; preview.url is where it listens
        for ...:
            preview.publish(annotated_bgr, {"fps": 24.6, "latency p95 (ms)": 71, "dropped": 3})

`publish` only stores a reference to the newest image and a copy of the figures (O(1) for the caller; do not
modify an image after publishing it). The server threads JPEG-encode the newest frame on request, once per frame
whatever the number of clients; a slow client gets the newest frame when it is ready for one, so the preview drops
frames, never the loop. A client that stops reading is cut off after `CLIENT_TIMEOUT_S`.

Endpoints: `/` (the page: the video and a table of the figures, refreshed by script), `/frame.jpg?after=N` (the
newest frame if it is newer than frame N, else 204; its number in the `X-Frame` header), `/stream.mjpg` (MJPEG,
`multipart/x-mixed-replace`, for players and plain `<img>` tags) and `/stats.json` (`{"frame": N, "stats": {...}}`).
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from dff.errors import DFFError

log = logging.getLogger(__name__)

CLIENT_TIMEOUT_S = 10.0
JPEG_QUALITY = 80
_BOUNDARY = "dffframe"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>dff live</title>
<style>
body { margin: 0; background: #111; color: #eee; font: 16px sans-serif; }
#video { display: block; }
table { margin: 8px; border-collapse: collapse; }
th { text-align: left; padding-right: 16px; font-weight: normal; color: #aaa; }
</style></head>
<body><img id="video" alt=""><table id="stats"></table>
<script>
const video = document.getElementById("video"), table = document.getElementById("stats");
let frame = -1;
function text(v) { return typeof v === "number" && !Number.isInteger(v) ? v.toFixed(2) : String(v); }
async function frames() {
  let wait = 20;
  try {
    const r = await fetch("/frame.jpg?after=" + frame, {cache: "no-store"});
    if (r.status === 200) {
      frame = Number(r.headers.get("X-Frame"));
      const url = URL.createObjectURL(await r.blob()), old = video.src;
      await new Promise(done => { video.onload = video.onerror = done; video.src = url; });
      if (old) URL.revokeObjectURL(old);
      wait = 0;
    }
  } catch (e) { wait = 1000; }
  setTimeout(frames, wait);
}
async function stats() {
  try {
    const s = await (await fetch("/stats.json", {cache: "no-store"})).json();
    table.replaceChildren(...Object.entries(s.stats).map(([k, v]) => {
      const row = document.createElement("tr"), name = document.createElement("th");
      const value = document.createElement("td");
      name.textContent = k; value.textContent = text(v); row.append(name, value); return row;
    }));
  } catch (e) {}
  setTimeout(stats, 250);
}
frames(); stats();
</script></body></html>
"""


class Preview:
    """An HTTP server in daemon threads showing the newest published frame and figures; see the module docstring.

    Raises DFFError when it cannot listen on `host:port`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, jpeg_quality: int = JPEG_QUALITY) -> None:
        self._cond = threading.Condition()
        self._image: np.ndarray | Callable[[], np.ndarray] | None = None
        self._stats: dict[str, Any] = {}
        self._frame = -1  # number of the newest published frame
        self._closed = False
        self._jpeg_lock = threading.Lock()
        self._jpeg: tuple[int, bytes] = (-1, b"")
        self._quality = int(jpeg_quality)
        try:
            self._server = _Server((host, port), _handler(self))
        except OSError as e:
            raise DFFError(f"preview: cannot listen on {host}:{port} ({e.strerror or e})") from None
        bound_host, bound_port = self._server.server_address[:2]
        self.url = f"http://{bound_host}:{bound_port}/"
        self._thread = threading.Thread(target=self._server.serve_forever, name="preview", daemon=True)
        self._thread.start()

    def publish(self, image_bgr: np.ndarray | Callable[[], np.ndarray], stats: Mapping[str, Any] | None = None) -> None:
        """Make `image_bgr` (uint8 H x W x 3, kept by reference; or a function that draws it, called on the server's
        side only when a client asks for this frame) the frame shown, with `stats` (copied) beside it; returns at
        once."""
        figures = dict(stats) if stats is not None else None
        with self._cond:
            self._image = image_bgr
            if figures is not None:
                self._stats = figures
            self._frame += 1
            self._cond.notify_all()

    def close(self) -> None:
        """Stop serving (clients still connected are cut off)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> Preview:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- server side ---------------------------------------------------------------------------------------------

    def _newer_than(self, frame: int, timeout: float) -> tuple[int, np.ndarray | Callable[[], np.ndarray]] | None:
        """The newest frame if newer than `frame`, waiting up to `timeout` s for one; None if none or closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._frame > frame or self._closed, timeout)
            if self._closed or self._frame <= frame or self._image is None:
                return None
            return self._frame, self._image

    def _jpeg_of(self, frame: int, image: np.ndarray | Callable[[], np.ndarray]) -> bytes:
        """The JPEG of frame `frame`, encoded once whatever the number of clients."""
        with self._jpeg_lock:
            if self._jpeg[0] != frame:
                image = image() if callable(image) else image
                ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self._quality])
                if not ok:
                    raise ValueError(f"preview: frame {frame} cannot be encoded as JPEG (shape {image.shape})")
                self._jpeg = (frame, data.tobytes())
            return self._jpeg[1]

    def _stats_json(self) -> bytes:
        with self._cond:
            body = {"frame": self._frame, "stats": self._stats}
        return json.dumps(body, default=_plain).encode()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


def _handler(preview: Preview) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        timeout = CLIENT_TIMEOUT_S  # a client that stops reading is cut off after this long

        def do_GET(self) -> None:  # noqa: N802 - the http.server name
            url = urlsplit(self.path)
            try:
                if url.path in ("/", "/index.html"):
                    self._send(200, "text/html; charset=utf-8", PAGE.encode())
                elif url.path == "/frame.jpg":
                    self._one_frame(parse_qs(url.query).get("after", ["-1"])[0])
                elif url.path == "/stream.mjpg":
                    self._mjpeg()
                elif url.path == "/stats.json":
                    self._send(200, "application/json", preview._stats_json())
                else:
                    self._send(404, "text/plain", b"not found\n")
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                self.close_connection = True

        def _one_frame(self, after: str) -> None:
            newest = preview._newer_than(int(after) if after.lstrip("-").isdigit() else -1, 0.0)
            if newest is None:
                self._send(204, "image/jpeg", b"")
                return
            frame, image = newest
            self._send(200, "image/jpeg", preview._jpeg_of(frame, image), {"X-Frame": str(frame)})

        def _mjpeg(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            frame = -1
            while not preview._closed:
                newest = preview._newer_than(frame, 1.0)
                if newest is None:
                    continue
                frame, image = newest
                data = preview._jpeg_of(frame, image)
                head = f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                self.wfile.write(head.encode() + data + b"\r\n")
                self.wfile.flush()
            self.close_connection = True

        def _send(self, status: int, kind: str, body: bytes, headers: Mapping[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the http.server signature
            log.debug("preview: " + format, *args)

    return Handler


def _plain(value: object) -> object:
    """numpy scalars as Python numbers; anything else JSON cannot write as its text."""
    return value.item() if isinstance(value, np.generic) else str(value)
