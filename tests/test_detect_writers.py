"""Result writers (JSONL, video, COCO results, MOT tracks, one interface) and drawing helpers."""

from __future__ import annotations

import errno
import json
from fractions import Fraction

import av
import numpy as np
import pytest

from dff.errors import InputError, OutputError
from dff.io.draw import color_wheel, draw_detections, draw_frame_marker, flow_to_color
from dff.io.result import FrameResult
from dff.io.writers import (
    AnnotatedVideoWriter,
    CocoResultsWriter,
    JsonlWriter,
    MotWriter,
    Outputs,
    ResultWriter,
    VideoWriter,
    video_codec,
    video_format,
)

NAMES = ("airplane", "car", "bicycle")


def result(frame: int, boxes, scores, labels, **more) -> FrameResult:
    return FrameResult(
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(scores, np.float32),
        np.asarray(labels, np.int64),
        frame_index=frame,
        is_key_frame=more.pop("key", False),
        class_names=NAMES,
        **more,
    )


def decode(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(c.streams.video[0])]


def test_record_schema():
    r = result(7, [[1.234, 2, 30.5, 40]], [0.91234567], [2], time_s=0.28, key_index=5)
    rec = r.to_record()
    assert rec == {
        "frame": 7,
        "time_s": 0.28,
        "key": False,
        "key_reason": None,
        "key_frame": 5,
        "detections": [{"bbox": [1.234, 2.0, 30.5, 40.0], "score": 0.91234565, "class_id": 2, "label": "bicycle"}],
    }
    assert json.loads(json.dumps(rec)) == rec
    back = FrameResult.from_record(json.loads(json.dumps(rec)), NAMES)
    assert np.array_equal(back.boxes, r.boxes) and np.array_equal(back.scores, r.scores)  # float32 kept exactly
    key = result(0, np.zeros((0, 4)), [], [], key=True, key_reason="cut", time_s=0.0, key_index=0)
    assert key.to_record()["key"] and key.to_record()["key_reason"] == "cut" and key.to_record()["detections"] == []
    live = result(3, [], [], [], time_s=0.12, arrival_s=10.0, ready_s=10.25, video_id=2, image_id=40)
    rec = live.to_record()
    assert (rec["arrival_s"], rec["ready_s"], rec["latency_s"], rec["video_id"], rec["image_id"]) == (
        10,
        10.25,
        0.25,
        2,
        40,
    )


def test_every_writer_is_a_result_writer(tmp_path):
    outputs = Outputs.in_folder(tmp_path, Outputs.KINDS)
    from contextlib import ExitStack

    with ExitStack() as stack:
        writers = outputs.open(stack, 25.0, lambda shape: (1.0, 1.0))
        assert set(writers) == set(Outputs.KINDS)
        assert all(isinstance(w, ResultWriter) for w in writers.values())
        image = np.zeros((48, 64, 3), np.uint8)
        for i in range(3):
            writers_input = result(i, [[1, 2, 30, 40]], [0.9], [1], track_ids=np.array([4]), image=image)
            for w in writers.values():
                w.write(writers_input)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Outputs.IN_FOLDER.values())
    assert len((tmp_path / "detections.jsonl").read_text().splitlines()) == 3
    assert len(decode(tmp_path / "detections.mp4")) == 3
    assert [p.name for p in (tmp_path / "flow").iterdir()] == []  # no flow in these results


def test_mot_tracks_are_motchallenge_lines(tmp_path):
    path = tmp_path / "tracks.txt"
    with MotWriter(path) as w:
        w.write(result(0, [[10, 20, 50, 80], [5, 5, 9, 9]], [0.9, 0.3], [1, 2], track_ids=np.array([3, -1])))
        w.write(result(1, [[12, 20, 52, 80]], [0.8], [1], track_ids=np.array([3])))
    assert path.read_text().splitlines() == [
        "1,3,10.00,20.00,40.00,60.00,0.90000,-1,-1,-1",
        "2,3,12.00,20.00,40.00,60.00,0.80000,-1,-1,-1",
    ]
    with pytest.raises(InputError, match="track ids"), MotWriter(tmp_path / "t2.txt") as w:
        w.write(result(0, [[1, 1, 2, 2]], [0.5], [0]))


def test_annotated_video_draws_each_result_on_its_frame(tmp_path):
    path = tmp_path / "a.mp4"
    frame = np.full((96, 128, 3), 200, np.uint8)
    with AnnotatedVideoWriter(path, 10.0) as w:
        for i in range(2):
            w.write(result(i, [[20, 20, 100, 80]], [0.9], [1], image=frame))
    first = decode(path)[0]
    assert np.abs(first.astype(int) - frame.astype(int)).max() > 100  # a box and a label drawn
    with pytest.raises(dff_errors().DFFError, match="no image"):
        result(0, [], [], []).plot()


def dff_errors():
    import dff.errors

    return dff.errors


def test_jsonl_lines_are_flushed_as_written(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("old\n")
    with JsonlWriter(path) as w:
        w.write_record({"frame": 0})
        (tmp,) = tmp_path.glob(".d.*.tmp.jsonl")  # written beside the target, flushed line by line
        assert tmp.read_text() == '{"frame":0}\n' and path.read_text() == "old\n"
        w.write(result(1, [], [], []))
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
        w.write_record({"frame": 0})
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
        w.write(result(2, [[10, 20, 50, 60]], [0.5], [1]))
        assert not path.exists()  # only the temporary file exists until close
        w.write(result(3, np.zeros((0, 4)), [], []))
        raise RuntimeError("stop")
    # image_id: the frame's 1-based number, as the project's COCO-VID files number a video's frames
    assert json.loads(path.read_text()) == [{"image_id": 3, "bbox": [10, 20, 40, 40], "score": 0.5, "category_id": 2}]
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
