"""Live sources (dff.io.live) and the real-time stream sender (dff.live.sender): the newest frame only, drops
counted, real UDP streams on 127.0.0.1, the stream timeout, cameras (only what can run without one: no /dev/video*
and no v4l2loopback module on the test machines)."""

from __future__ import annotations

import functools
import http.server
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from dff.errors import InputError
from dff.io import sources
from dff.io.live import LiveFrame, camera_device, is_live, open_camera, open_live
from dff.io.writers import VideoWriter
from dff.live.sender import StreamSender
from tests.conftest import REAL
from tests.test_detect_sources import remux

BIKES = REAL / "videos" / "bikes.mp4"


def levels_folder(folder: Path, n: int) -> Path:
    """n frames whose grey level is 5 * index (index readable back from the pixels)."""
    folder.mkdir()
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:04d}.png"), np.full((24, 32, 3), 5 * i, np.uint8))
    return folder


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_in_background(url: str, opener=open_live) -> dict:
    """Start opening `url` (it waits for the first packets) so that a sender started next is heard from frame 0."""
    box: dict = {}

    def run() -> None:
        try:
            box["source"] = opener(url)
        except BaseException as e:  # noqa: BLE001 - checked by the test
            box["error"] = e

    box["thread"] = threading.Thread(target=run, daemon=True)
    box["thread"].start()
    time.sleep(0.3)
    return box


def opened(box: dict):
    box["thread"].join(timeout=30)
    if "error" in box:
        raise box["error"]
    return box["source"]


# -- paced files ---------------------------------------------------------------------------------------------


def test_a_slow_consumer_gets_the_newest_paced_frame_and_the_rest_are_dropped(tmp_path):
    """40 frames at 20 fps (2 s) taken by a consumer needing 0.2 s a frame (4 frame periods): it never falls
    behind (a queue would hand it frame 10 at about 2 s, and the last one 6 s after it was due)."""
    source = open_live(levels_folder(tmp_path / "f", 40), fps=20)
    assert (source.kind, source.fps, source.is_stream) == ("paced", 20.0, False)
    taken, lags, schedule = [], [], []
    with source:
        for frame in source:
            assert isinstance(frame, LiveFrame)
            lags.append(time.monotonic() - frame.arrival_s)
            taken.append(frame.index)
            schedule.append(frame.arrival_s - frame.index / 20)  # when frame 0 was due, by this frame's account
            assert frame.time_s == pytest.approx(frame.index / 20) and frame.image[0, 0, 0] == 5 * frame.index
            time.sleep(0.2)
        assert source.ended
    assert taken[0] == 0 and taken[-1] == 39 and all(b > a for a, b in zip(taken, taken[1:]))
    assert 5 <= len(taken) <= 12  # about one frame in four (2 s / 0.2 s, plus the last)
    assert max(lags) < 0.5
    assert max(schedule) - min(schedule) < 1e-6  # arrival = the scheduled time, on one clock
    assert (source.received, source.taken, source.dropped) == (40, len(taken), 40 - len(taken))


def test_a_fast_consumer_takes_every_paced_frame_when_it_is_due(tmp_path):
    source = open_live(levels_folder(tmp_path / "f", 10), fps=20)
    seen = [(frame.index, frame.arrival_s, time.monotonic()) for frame in source]
    assert [i for i, _, _ in seen] == list(range(10))
    assert all(taken >= arrival for _, arrival, taken in seen)  # never handed over early
    assert [arrival - seen[0][1] for _, arrival, _ in seen] == pytest.approx([k / 20 for k in range(10)], abs=1e-9)
    assert (source.received, source.taken, source.dropped) == (10, 10, 0)


def test_a_video_paced_at_another_rate(tmp_path):
    video = tmp_path / "ten.mkv"
    with VideoWriter(video, fps=25) as w:
        for i in range(10):
            w.write(np.full((64, 96, 3), 20 * i, np.uint8))
    with open_live(video) as own, open_live(video, fps=50) as faster:
        assert (own.fps, faster.fps) == (25.0, 50.0)
        for source, rate in ((own, 25), (faster, 50)):
            frames = list(source)
            assert [f.time_s for f in frames] == pytest.approx([k / rate for k in range(10)], abs=1e-6)
            arrivals = [f.arrival_s - frames[0].arrival_s for f in frames]
            assert arrivals == pytest.approx([k / rate for k in range(10)], abs=1e-6)


def test_latest_with_a_timeout(tmp_path):
    with open_live(levels_folder(tmp_path / "f", 3), fps=2) as source:  # frames due at 0, 0.5, 1.0 s
        assert source.latest().index == 0
        assert source.latest(timeout=0.1) is None and not source.ended  # frame 1 is not due yet
        assert source.latest(timeout=5).index == 1
        assert source.latest().index == 2
        assert source.latest(timeout=5) is None and source.ended
        with pytest.raises(StopIteration):
            next(source)


def test_close_stops_the_reader_promptly(long_source):
    before = threading.active_count()
    source = open_live(long_source, fps=25)  # 300 frames: 12 s
    assert [next(source).index for _ in range(2)] in ([0, 1], [0, 2])
    start = time.monotonic()
    source.close()
    assert time.monotonic() - start < 1.0 and threading.active_count() == before
    assert source.received == source.taken + source.dropped and source.ended


def test_missing_paced_input_is_the_sources_error(tmp_path):
    with pytest.raises(InputError, match=f"{tmp_path / 'nothing.mp4'}: no such file or folder"):
        open_live(tmp_path / "nothing.mp4")


# -- streams -------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("real_data")
def test_a_udp_stream_is_read_live_and_ends_with_the_timeout_error(monkeypatch):
    """bikes.mp4 sent in real time (25 fps, 2 s) over UDP on 127.0.0.1; a consumer needing 0.15 s a frame
    always gets a recent one; after the last frame the stream goes silent: the one-line timeout error."""
    monkeypatch.setattr(sources, "STREAM_TIMEOUT_S", 1.0)
    url = f"udp://127.0.0.1:{free_udp_port()}"
    box = open_in_background(url)
    with StreamSender(str(BIKES), url, seconds=2.0) as sender:
        source = opened(box)
        assert (source.kind, source.fps, source.is_stream) == ("stream", 25.0, True)
        taken, lags = [], []
        with pytest.raises(InputError) as e:
            for frame in source:
                taken.append(frame.index)
                lags.append((frame.time_s, time.monotonic() - sender.sent_at(frame.time_s)))
                time.sleep(0.15)
        report = sender.wait(timeout=10)
    assert report.frames_sent == 50 and report.codec == "libx264"
    n = report.frames_sent
    assert str(e.value) == (
        f"{url}: timed out: the stream sent nothing for 1 s after frame {n}; frames 0-{n - 1} were read"
    )
    assert taken[-1] == n - 1 and all(b > a for a, b in zip(taken, taken[1:]))
    # Once opened (FFmpeg probes the stream for about a second first), each frame is taken soon after it was sent;
    # but the last, which the parser holds until more data shows where it ends, comes out at the timeout.
    assert max(lag for t, lag in lags[:-1] if t >= 1.2) < 0.6 and lags[-1][1] > 1.0
    source.close()
    # Counting starts at the first request: frames decoded before it (the burst after probing) are not counted.
    assert source.received == n - taken[0] and source.dropped == source.received - len(taken) > 10


@pytest.mark.usefixtures("real_data")
def test_open_source_reports_a_stream_that_stops_sending_as_a_timeout(monkeypatch):
    """Regression: the decoder flushes the frames it held when the read times out, which used to turn the
    timeout into 'stream failed; ... (Immediate exit requested)'."""
    monkeypatch.setattr(sources, "STREAM_TIMEOUT_S", 1.0)
    url = f"udp://127.0.0.1:{free_udp_port()}"
    box = open_in_background(url, sources.open_source)
    with StreamSender(str(BIKES), url, seconds=1.0):
        source = opened(box)
        with pytest.raises(InputError, match=f"^{url}: timed out: the stream sent nothing for 1 s after frame"):
            for _ in source:
                pass


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.usefixtures("real_data")
def test_a_stream_that_ends_ends_the_iteration(tmp_path):
    """bikes.mp4 as MPEG-TS over HTTP: a stream, decoded as fast as it comes (not paced); a consumer needing
    20 ms a frame takes some, the rest are dropped, and the end of the stream ends the iteration."""
    remux(BIKES, tmp_path / "bikes.ts", "mpegts")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=tmp_path))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with open_live(f"http://127.0.0.1:{server.server_address[1]}/bikes.ts") as source:
            taken = []
            for frame in source:
                taken.append(frame.index)
                time.sleep(0.02)
            assert source.ended and source.latest(timeout=1) is None
    finally:
        server.shutdown()
        server.server_close()
    assert taken[-1] == 249 and all(b > a for a, b in zip(taken, taken[1:]))
    received = 250 - taken[0]  # (frames decoded before the first request are not counted)
    assert (source.received, source.taken, source.dropped) == (received, len(taken), received - len(taken))
    assert source.dropped > 0


def test_the_sender_command_loops_and_keeps_time(tmp_path, monkeypatch):
    """A 10-frame video sent looped for 1.2 s at 25 fps by `python -m dff.live.sender` (30 frames): stream times
    go on across the loops (frame k at k / 25 s, sent at start + k / 25) and the pictures repeat."""
    video = tmp_path / "ten.mkv"
    with VideoWriter(video, fps=25) as w:
        for i in range(10):
            w.write(np.full((64, 96, 3), 20 * i, np.uint8))
    monkeypatch.setattr(sources, "STREAM_TIMEOUT_S", 20.0)  # time for the sender's interpreter to start
    url = f"udp://127.0.0.1:{free_udp_port()}"
    box = open_in_background(url, sources.open_source)  # every frame, queued
    cmd = [sys.executable, "-m", "dff.live.sender", str(video), url, "--loop", "--seconds", "1.2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    start = json.loads(proc.stdout.readline())
    assert (start["event"], start["fps"], start["width"], start["height"]) == ("start", 25.0, 96, 64)
    frames = []
    with opened(box) as source:
        for frame in source:
            frames.append((frame.time_s, time.monotonic() - (start["start_monotonic"] + frame.time_s), frame.image))
            if frame.index == 25:  # (the stream's last frame only comes out at the stream timeout)
                break
    out, err = proc.communicate(timeout=30)
    end = json.loads(out)
    assert proc.returncode == 0 and err == "" and (end["event"], end["frames_sent"]) == ("end", 30)
    assert end["max_late_s"] < 0.5 and end["start_monotonic"] == start["start_monotonic"]
    assert [round(t * 25) for t, _, _ in frames] == list(range(26))
    levels = [float(image.mean()) for _, _, image in frames]
    assert all(b > a + 10 for a, b in zip(levels[:10], levels[1:10]))  # ten different pictures ...
    assert np.allclose(levels[10:], levels[:16], atol=2)  # ... then the same again
    assert all(0 < delay < 1.5 for _, delay, _ in frames)  # received after it was sent, on the same clock


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_sender_command_stops_cleanly_on_a_signal(tmp_path, sig):
    folder = levels_folder(tmp_path / "f", 5)
    url = f"udp://127.0.0.1:{free_udp_port()}"  # nobody listens: UDP does not care
    cmd = [sys.executable, "-m", "dff.live.sender", str(folder), url, "--loop"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert json.loads(proc.stdout.readline())["event"] == "start"
    time.sleep(0.5)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    end = json.loads(out)
    assert proc.returncode == 0 and err == "" and end["event"] == "end" and end["frames_sent"] >= 5


def test_the_sender_command_errors_are_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dff.live.sender", str(tmp_path / "none.mp4"), "udp://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"python -m dff.live.sender: error: {tmp_path / 'none.mp4'}: no such file or folder\n"


# -- cameras -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "device"),
    [
        ("0", "/dev/video0"),
        ("12", "/dev/video12"),
        ("007", "/dev/video7"),
        ("/dev/video2", "/dev/video2"),
        ("/dev/video", None),
        ("/dev/videox", None),
        ("-1", None),
        ("0.5", None),
        ("video0.mp4", None),
        ("udp://127.0.0.1:5000", None),
    ],
)
def test_camera_devices(source, device):
    assert camera_device(source) == device
    assert is_live(source) == (device is not None or source.startswith("udp://"))


def test_a_missing_camera_is_a_one_line_error():
    with pytest.raises(InputError, match=r"^camera 57 \(/dev/video57\): no such device \(is the camera connected\?\)$"):
        open_live("57")
    with pytest.raises(InputError, match=r"^/dev/video57: no such device"):
        open_live("/dev/video57")


def test_a_device_that_is_no_camera_is_a_one_line_error():
    """/dev/null reaches FFmpeg's v4l2 input, which refuses it: the path through PyAV's v4l2 input is wired."""
    with pytest.raises(InputError, match=r"^/dev/null: cannot open camera: Inappropriate ioctl for device$"):
        open_camera("/dev/null")
