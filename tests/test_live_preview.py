"""The live preview: what a real headless browser shows (frame with its boxes, the figures), its endpoints, and
that clients that are slow or stop reading never block `publish`."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import time
import urllib.request

import cv2
import numpy as np
import pytest

from dff.errors import DFFError
from dff.io.draw import class_color, draw_detections
from dff.live.preview import Preview

CLASSES = ("person", "bicycle", "car", "dog")
BOX = (100.0, 120.0, 420.0, 380.0)  # x1, y1, x2, y2 of the one detection, a "dog" (label 3)
STATS = {"fps": 24.56, "latency p95 (ms)": 71, "dropped frames": 3, "key frames": 12}


def annotated_frame() -> np.ndarray:
    """A 720 x 540 frame (lines 2 px wide at this size) on a flat grey-blue background, one box drawn."""
    image = np.empty((540, 720, 3), np.uint8)
    image[:] = (90, 70, 50)
    boxes = np.array([BOX], np.float32)
    return draw_detections(image, boxes, np.array([0.93], np.float32), np.array([3]), CLASSES)


def chromium(url: str, tmp_path, *args: str) -> subprocess.CompletedProcess:
    """Headless chromium on `url`, given time for the page's scripts (virtual time) before it answers."""
    exe = shutil.which("chromium")
    if exe is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium package)")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=3000",
    ]
    return subprocess.run([exe, *flags, *args, url], capture_output=True, text=True, timeout=120, check=True)


def test_a_headless_browser_shows_the_frame_with_its_boxes_and_the_figures(tmp_path):
    frame = annotated_frame()
    with Preview(port=0) as preview:
        assert preview.url.startswith("http://127.0.0.1:") and not preview.url.endswith(":0/")
        preview.publish(frame, STATS)
        shot = tmp_path / "shot.png"
        chromium(preview.url, tmp_path, f"--screenshot={shot}", "--window-size=900,800")
        dom = chromium(preview.url, tmp_path, "--dump-dom").stdout
    page = cv2.imread(str(shot))
    assert page.shape == (800, 900, 3)
    # The frame is shown at its own size in the top-left corner: the screenshot there is the frame (JPEG-close).
    shown = page[:540, :720].astype(np.int16)
    assert np.abs(shown - frame).mean() < 3.0
    # Its box: pixels of the dog's class colour trace a rectangle at the box's place (+-2 px).
    color = np.array(class_color(3), np.int16)
    near = np.abs(shown - color).max(axis=2) < 40
    x1, y1, x2, y2 = (round(v) for v in BOX)
    for edge in (near[y1 + 10 : y2 - 10, x1 - 2 : x1 + 3], near[y1 + 10 : y2 - 10, x2 - 2 : x2 + 3]):
        assert edge.any(axis=1).all()  # the left and right sides are drawn all along
    assert near[y2 - 2 : y2 + 3, x1 + 10 : x2 - 10].any(axis=0).all()  # and the bottom side
    assert not near[y1 + 10 : y2 - 10, x1 + 10 : x2 - 10].any()  # not inside it
    ys, xs = np.nonzero(near[y1 - 40 :, :])  # (the label badge sits above the box, in the same colour)
    assert abs(xs.min() - x1) <= 2 and abs(xs.max() - x2) <= 2 and abs(ys.max() + y1 - 40 - y2) <= 2
    # Below the frame the figures are written (light text on the dark page), and the page's table holds them.
    assert (page[545:700, :400].max(axis=2) > 150).sum() > 200
    for name, value in (("fps", "24.56"), ("latency p95 (ms)", "71"), ("dropped frames", "3"), ("key frames", "12")):
        assert f"<th>{name}</th><td>{value}</td>" in dom


def get(url: str) -> tuple[int, dict, bytes]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, dict(r.headers), r.read()


def test_endpoints_serve_the_newest_frame_and_figures():
    with Preview() as preview:
        assert get(preview.url + "frame.jpg")[0] == 204  # nothing published yet
        assert json.loads(get(preview.url + "stats.json")[2]) == {"frame": -1, "stats": {}}
        first, second = annotated_frame(), np.zeros((48, 64, 3), np.uint8)
        preview.publish(first, {"fps": np.float32(2.5)})
        preview.publish(second, {"fps": 25.0, "dropped": np.int64(7)})
        status, headers, body = get(preview.url + "frame.jpg")
        assert (status, headers["X-Frame"]) == (200, "1")
        assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)  # the newest
        assert get(preview.url + "frame.jpg?after=1")[0] == 204  # nothing newer than frame 1
        assert get(preview.url + "frame.jpg?after=0")[1]["X-Frame"] == "1"
        assert json.loads(get(preview.url + "stats.json")[2]) == {"frame": 1, "stats": {"fps": 25.0, "dropped": 7}}
        page = get(preview.url)[2].decode()
        assert "/frame.jpg?after=" in page and "/stats.json" in page
        with pytest.raises(urllib.error.HTTPError, match="404"):
            get(preview.url + "nothing")

        connection = http.client.HTTPConnection("127.0.0.1", int(preview.url.rsplit(":", 1)[1].strip("/")), timeout=10)
        connection.request("GET", "/stream.mjpg")
        stream = connection.getresponse()
        assert stream.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=dffframe"
        part = read_part(stream)
        assert cv2.imdecode(np.frombuffer(part, np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
        preview.publish(first)
        part = read_part(stream)
        decoded = cv2.imdecode(np.frombuffer(part, np.uint8), cv2.IMREAD_COLOR)
        assert decoded.shape == first.shape and np.abs(decoded.astype(np.int16) - first).mean() < 3.0
        connection.close()


def read_part(response: http.client.HTTPResponse) -> bytes:
    """The JPEG of the next part of an MJPEG response."""
    assert response.readline() == b"--dffframe\r\n"
    headers = {}
    while (line := response.readline()) != b"\r\n":
        name, value = line.decode().split(":", 1)
        headers[name.strip().lower()] = value.strip()
    assert headers["content-type"] == "image/jpeg"
    data = response.read(int(headers["content-length"]))
    assert response.read(2) == b"\r\n"
    return data


def test_clients_that_stop_reading_never_block_publish():
    rng = np.random.default_rng(0)
    big = [rng.integers(0, 256, (1080, 1920, 3), np.uint8) for _ in range(4)]  # noise: JPEGs of ~2 MB each
    with Preview() as preview:
        port = int(preview.url.rsplit(":", 1)[1].strip("/"))
        preview.publish(big[0], {"n": 0})
        hung = []
        for path in ("/stream.mjpg", "/stream.mjpg", "/frame.jpg"):
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())  # ... and never reads the answer
            hung.append(s)
        time.sleep(0.5)  # the server is now blocked writing to them
        slowest = 0.0
        for i in range(1, 301):
            start = time.perf_counter()
            preview.publish(big[i % 4], {"n": i})
            slowest = max(slowest, time.perf_counter() - start)
            time.sleep(0.002)
        assert slowest < 0.05  # a reference stored under a lock: microseconds; generous for a busy machine
        # Other clients are still served, the newest frame and figures.
        assert json.loads(get(preview.url + "stats.json")[2]) == {"frame": 300, "stats": {"n": 300}}
        assert get(preview.url + "frame.jpg?after=299")[1]["X-Frame"] == "300"
        start = time.perf_counter()
    assert time.perf_counter() - start < 5.0  # closing does not wait for the hung clients
    for s in hung:
        s.close()


def test_a_busy_port_is_a_one_line_error():
    with Preview() as preview:
        port = int(preview.url.rsplit(":", 1)[1].strip("/"))
        with pytest.raises(DFFError, match=f"preview: cannot listen on 127.0.0.1:{port} \\(Address already in use\\)"):
            Preview(port=port)
