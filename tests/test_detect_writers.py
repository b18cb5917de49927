"""Result writers (JSONL, video, COCO results) and drawing helpers."""

from __future__ import annotations

import errno
import json
from fractions import Fraction

import av
import numpy as np
import pytest

from dff.errors import OutputError
from dff.io.draw import color_wheel, draw_detections, draw_frame_marker, flow_to_color
from dff.io.writers import (
    CocoResultsWriter,
    JsonlWriter,
    VideoWriter,
    detection_record,
    video_codec,
    video_format,
)

NAMES = ("airplane", "car", "bicycle")


def decode(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(c.streams.video[0])]


def test_detection_record_schema():
    rec = detection_record(
        7,
        0.28,
        False,
        np.array([[1.234, 2, 30.5, 40]], np.float32),
        np.array([0.91234567], np.float32),
        np.array([2]),
        NAMES,
    )
    assert rec == {
        "frame": 7,
        "time_s": 0.28,
        "key": False,
        "key_reason": None,
        "detections": [{"bbox": [1.23, 2.0, 30.5, 40.0], "score": 0.91235, "label": "bicycle", "class_id": 2}],
    }
    assert json.loads(json.dumps(rec)) == rec
    key = detection_record(0, 0.0, True, np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), NAMES, "cut")
    assert key["key"] and key["key_reason"] == "cut" and key["detections"] == []


def test_jsonl_lines_are_flushed_as_written(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("old\n")
    with JsonlWriter(path) as w:
        w.write({"frame": 0})
        (tmp,) = tmp_path.glob(".d.*.tmp.jsonl")  # written beside the target, flushed line by line
        assert tmp.read_text() == '{"frame":0}\n' and path.read_text() == "old\n"
        w.write({"frame": 1})
        assert len(tmp.read_text().splitlines()) == 2
    assert len(path.read_text().splitlines()) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["d.jsonl"]
    with pytest.raises(OutputError, match="does not exist"):
        JsonlWriter(tmp_path / "missing" / "d.jsonl")


def test_jsonl_without_lines_keeps_the_old_file(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), JsonlWriter(path):
        raise RuntimeError("the first frame failed")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["d.jsonl"]


def test_full_disk_names_the_output_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "d.jsonl"
    path.write_text("old\n")
    w = JsonlWriter(path)
    monkeypatch.setattr(w, "_f", _FullDisk())
    with pytest.raises(OSError) as e:
        w.write({"frame": 0})
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(path)
    w.close()
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["d.jsonl"]


class _FullDisk:
    closed = False

    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_coco_results_stream_and_close_on_error(tmp_path):
    path = tmp_path / "coco.json"
    with pytest.raises(RuntimeError), CocoResultsWriter(path) as w:
        w.write(3, np.array([[10, 20, 50, 60]], np.float32), np.array([0.5], np.float32), np.array([1]))
        assert not path.exists()  # only the temporary file exists until close
        w.write(4, np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
        raise RuntimeError("stop")
    assert json.loads(path.read_text()) == [{"image_id": 3, "category_id": 2, "bbox": [10, 20, 40, 40], "score": 0.5}]
    assert [p.name for p in tmp_path.iterdir()] == ["coco.json"]


@pytest.mark.parametrize("codec", sorted({video_codec(), "mpeg4"}))
def test_video_writer_odd_size_fps_and_size_change(tmp_path, codec):
    path = tmp_path / "out.mp4"
    with VideoWriter(path, fps=29.97002997, codec=codec) as w:
        for i in range(6):
            w.write(np.full((271, 641, 3), 40 * i, np.uint8))
        w.write(np.full((100, 100, 3), 255, np.uint8))  # another size: scaled to fit, letterboxed
    frames = decode(path)
    assert len(frames) == 7 and frames[0].shape == (272, 642, 3)
    assert abs(int(frames[3][100, 300, 1]) - 120) <= 6
    last = frames[-1]
    assert last[130, 320].min() > 200 and last[130, 20].max() < 40  # white square centred, black bars
    with av.open(str(path)) as c:
        assert c.streams.video[0].average_rate == Fraction(30000, 1001)
        assert c.streams.video[0].codec_context.name == ("h264" if codec == "libx264" else "mpeg4")


def test_video_writer_closed_after_exception_is_playable(tmp_path):
    path = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt), VideoWriter(path, fps=25) as w:
        for i in range(5):
            w.write(np.full((64, 96, 3), 50 * i, np.uint8))
        raise KeyboardInterrupt
    assert len(decode(path)) == 5
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_video_writer_without_frames_leaves_nothing(tmp_path):
    VideoWriter(tmp_path / "none.mp4", fps=25).close()
    assert list(tmp_path.iterdir()) == []


def test_webm_gets_a_codec_webm_accepts(tmp_path):
    path = tmp_path / "out.webm"
    with VideoWriter(path, fps=25) as w:
        for i in range(4):
            w.write(np.full((48, 64, 3), 60 * i, np.uint8))
    assert len(decode(path)) == 4
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name in ("vp9", "av1", "libdav1d", "libvpx-vp9")


def test_unknown_video_extension_is_refused(tmp_path):
    assert video_format(tmp_path / "x.MKV") == ("matroska", video_codec())
    for name in ("x.gif", "x"):
        with pytest.raises(OutputError, match="unknown video extension"):
            VideoWriter(tmp_path / name, fps=25)
    assert list(tmp_path.iterdir()) == []


def test_video_full_disk_at_close_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"old video")
    w = VideoWriter(path, fps=25)
    w.write(np.zeros((48, 64, 3), np.uint8))

    class FullDisk:
        def close(self) -> None:
            raise av.error.FFmpegError(errno.ENOSPC, "No space left on device")

    real = w._container
    monkeypatch.setattr(w, "_container", FullDisk())
    w._stream = None
    with pytest.raises(OSError) as e:
        w.close()
    real.close()
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(path)
    assert path.read_bytes() == b"old video"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_flow_colours():
    still = flow_to_color(np.zeros((2, 4, 5), np.float32))
    assert still.shape == (4, 5, 3) and (still == 255).all()  # no motion = white
    right = flow_to_color(np.stack([np.ones((2, 2)), np.zeros((2, 2))]).astype(np.float32))
    down = flow_to_color(np.stack([np.zeros((2, 2)), np.ones((2, 2))]).astype(np.float32))
    assert right[0, 0].tolist() == [0, 0, 255]  # +x: pure red (BGR), full saturation
    assert right[0, 0].tolist() != down[0, 0].tolist()
    half = flow_to_color(np.stack([np.ones((1, 2)), np.zeros((1, 2))]).astype(np.float32), max_magnitude=2.0)
    assert half[0, 0].tolist() == [128, 128, 255]  # half the magnitude: half saturated
    wheel = color_wheel(33)
    assert wheel[0, 0].tolist() == [0, 0, 0] and wheel[16, 32].tolist() == [0, 0, 255]


def test_draw_detections_and_marker():
    img = np.zeros((200, 300, 3), np.uint8)
    out = draw_detections(
        img, np.array([[50, 60, 150, 160]], np.float32), np.array([0.9], np.float32), np.array([1]), NAMES
    )
    assert img.max() == 0  # input untouched
    assert out[110, 50].any() and out[60, 100].any() and not out[110, 100].any()  # border drawn, inside empty
    assert out[40:58, 50:120].any()  # label above the box
    assert draw_frame_marker(out.copy(), 10, True)[3, 3].tolist() == [40, 40, 230]  # red KEY badge
    assert draw_frame_marker(out.copy(), 11, False)[3, 3].tolist() == [140, 140, 140]  # grey flow badge
