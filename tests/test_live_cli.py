"""`dff detect` on live sources: latency in every JSONL line, the summary line, Ctrl-C / SIGTERM leaving a valid
JSONL and a playable video, a real UDP stream that stops sending ending with the one-line timeout error, and the
preview's running figures while the run goes on."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import av
import pytest

from dff.cli.demo import CLIP_PATH, MODEL_PATH
from dff.cli.main import main
from dff.io import sources
from dff.live.sender import StreamSender

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def frames_in(path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_a_live_file_run_has_latency_in_every_line(tmp_path, capsys, one_thread):
    j, v = tmp_path / "d.jsonl", tmp_path / "d.mp4"
    args = ["detect", str(CLIP_PATH), "--live", "--weights", str(MODEL_PATH), "--out-json", str(j), "--out-video"]
    assert main([*args, str(v), "--key-mode", "sync", "--no-progress"]) == 0
    err = capsys.readouterr().err
    lines = [json.loads(x) for x in j.read_text().splitlines()]
    assert lines and all({"arrival_s", "ready_s", "latency_s", "key_frame"} <= set(r) for r in lines)
    assert all(
        r["ready_s"] >= r["arrival_s"] and r["latency_s"] == pytest.approx(r["ready_s"] - r["arrival_s"], abs=2e-6)
        for r in lines
    )
    frames = [r["frame"] for r in lines]
    assert frames == sorted(set(frames)) and frames[0] == 0
    summary = next(x for x in err.splitlines() if "live:" in x)
    assert f"{len(lines)} frames processed, {60 - len(lines)} dropped" in summary  # the clip's 60 frames
    assert "latency p50" in summary and "p95" in summary and "max" in summary
    assert frames_in(v) == len(lines)
    with av.open(str(v)) as c:  # each processed frame at its place in the source: the video plays in real time
        assert float(c.streams.video[0].duration * c.streams.video[0].time_base) == pytest.approx(
            (frames[-1] + 1) / 15, abs=0.15
        )


@pytest.mark.parametrize(("signum", "code", "mode"), [(signal.SIGINT, 130, "sync"), (signal.SIGTERM, 143, "async")])
def test_a_signal_leaves_a_valid_jsonl_and_a_playable_video(long_source, tmp_path, signum, code, mode):
    j, v = tmp_path / "d.jsonl", tmp_path / "d.mp4"
    cmd = [
        sys.executable,
        "-m",
        "dff",
        "detect",
        str(long_source),
        "--live",
        "--fps",
        "25",
        "--weights",
        str(MODEL_PATH),
        "--out-json",
        str(j),
        "--out-video",
        str(v),
        "--key-mode",
        mode,
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not any(tmp_path.glob(".d.jsonl*")) or not next(tmp_path.glob(".d.jsonl*")).read_text().count("\n") >= 3:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, err.decode()
    assert "Traceback" not in err.decode() and "(interrupted)" in err.decode()
    lines = [json.loads(x) for x in j.read_text().splitlines()]
    assert 3 <= len(lines) < 300 and all("latency_s" in r for r in lines)
    assert frames_in(v) == len(lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl", "d.mp4"]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_udp_stream_that_stops_sending_ends_with_the_timeout_error(tmp_path, capsys, monkeypatch, one_thread):
    """A real MPEG-TS stream on 127.0.0.1 for 3 s, then silence: the run writes what it processed, then the stream's
    one-line timeout error (exit 2); the preview served the running figures meanwhile."""
    monkeypatch.setattr(sources, "STREAM_TIMEOUT_S", 3.0)  # opening too: the sender must start within 3 s
    url = f"udp://127.0.0.1:{free_udp_port()}"
    j = tmp_path / "d.jsonl"
    result: dict = {}

    def run() -> None:
        result["code"] = main(
            [
                "detect",
                url,
                "--weights",
                str(MODEL_PATH),
                "--out-json",
                str(j),
                "--preview",
                "127.0.0.1:0",
                "--no-progress",
            ]
        )

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(1.5)  # the model loads and the stream is opened (waiting for its first packets)
    with StreamSender(str(CLIP_PATH), url, fps=15, seconds=3):
        time.sleep(2.5)
        err_so_far = capsys.readouterr().err
        preview = next(x.split()[-1] for x in err_so_far.splitlines() if x.startswith("preview: "))
        with urllib.request.urlopen(preview + "stats.json", timeout=10) as r:
            stats = json.loads(r.read())
        assert stats["stats"]["processed"] >= 1 and "latency_p95_s" in stats["stats"]
    worker.join(timeout=120)
    err = capsys.readouterr().err
    assert result["code"] == 2
    error = [x for x in err.splitlines() if x.startswith("dff: error:")]
    assert len(error) == 1 and "timed out" in error[0] and url in error[0]
    lines = [json.loads(x) for x in j.read_text().splitlines()]
    assert len(lines) >= 5 and all("latency_s" in r for r in lines)
