"""The Python API a user of ultralytics / supervision expects: FrameResult's record (JSON-ready, float32 values kept
exactly), names, plot() and to_supervision(), score thresholds and single images in predict, detect_source on a
path; on hand-made results and on the bundled model's output, and their errors."""

from __future__ import annotations

import dataclasses
import json
import sys

import cv2
import numpy as np
import pytest

import dff
from dff.cli.demo import CLIP_PATH, MODEL_PATH
from dff.errors import DFFError, InputError
from dff.io.result import FrameResult
from dff.io.sources import open_source

NAMES = ("car", "dog", "bird")


def result(track_ids: np.ndarray | None = None, names: tuple[str, ...] = NAMES) -> FrameResult:
    return FrameResult(
        boxes=np.array([[1.5, 2.25, 30.1, 40.7], [100.0, 5.0, 120.3, 9.9]], dtype=np.float32),
        scores=np.array([0.9, 0.3], dtype=np.float32),
        labels=np.array([2, 0], dtype=np.int64),
        frame_index=7,
        is_key_frame=False,
        key_reason=None,
        class_names=names,
        track_ids=track_ids,
    )


@pytest.fixture(scope="module")
def model() -> dff.DFFModel:
    return dff.load(MODEL_PATH, preset="tiny_synthetic")


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    with open_source(CLIP_PATH) as src:
        return [f.image for _, f in zip(range(6), src)]


def test_record_is_json_and_keeps_the_values():
    r = result(np.array([4, -1], dtype=np.int64))
    d = json.loads(json.dumps(r.to_record()))
    assert d["frame"] == 7 and d["key"] is False and d["key_reason"] is None
    dets = d["detections"]
    assert np.array_equal(np.array([x["bbox"] for x in dets], dtype=np.float32), r.boxes)
    assert np.array_equal(np.array([x["score"] for x in dets], dtype=np.float32), r.scores)
    assert [x["class_id"] for x in dets] == [2, 0] and [x["label"] for x in dets] == ["bird", "car"]
    assert [x["track_id"] for x in dets] == [4, -1]
    assert r.names == ["bird", "car"] and len(r) == 2


def test_record_leaves_out_what_is_not_there():
    d = result(names=()).to_record()
    assert all("label" not in x and "track_id" not in x for x in d["detections"])
    assert "video_id" not in d and "latency_s" not in d
    empty = FrameResult(
        np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), 0, True, key_reason="first"
    )
    assert empty.to_record() == {
        "frame": 0,
        "time_s": None,
        "key": True,
        "key_reason": "first",
        "key_frame": None,
        "detections": [],
    }


def test_a_label_outside_the_class_names_is_an_error():
    with pytest.raises(InputError, match="frame 7: label 2 is not among the 2 classes"):
        result(names=NAMES[:2]).to_record()
    with pytest.raises(InputError, match="frame 7: 3 track ids for 2 detections"):
        result(np.array([1, 2, 3])).to_record()


def test_to_supervision():
    sv = pytest.importorskip("supervision", reason="the 'track' extra is not installed")
    r = result(np.array([4, -1], dtype=np.int64))
    det = r.to_supervision()
    assert isinstance(det, sv.Detections) and len(det) == 2
    assert np.array_equal(det.xyxy, r.boxes) and np.array_equal(det.confidence, r.scores)
    assert det.class_id.tolist() == [2, 0] and det.tracker_id.tolist() == [4, -1]
    assert det["class_name"].tolist() == ["bird", "car"]
    plain = result(names=()).to_supervision()
    assert plain.tracker_id is None and "class_name" not in plain.data
    assert len(det[det.confidence > 0.5]) == 1  # supervision's own filtering works on it


def test_to_supervision_without_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "supervision", None)  # `import supervision` now raises ImportError
    with pytest.raises(DFFError, match=r"needs the optional 'track' extra .*pip install 'deep-feature-flow\[track\]'"):
        result().to_supervision()


def test_score_threshold_and_classes(model, frames):
    every = list(model.predict(frames))
    confident = list(model.predict(frames, score_thr=0.5))
    for a, b in zip(every, confident, strict=True):
        keep = a.scores >= 0.5
        assert np.array_equal(a.boxes[keep], b.boxes) and np.array_equal(a.labels[keep], b.labels)
    assert sum(len(r) for r in every) > sum(len(r) for r in confident) > 0
    assert min(float(r.scores.min()) for r in every if len(r)) < 0.1  # the default keeps every detection
    wanted = int(confident[0].labels[0])
    only = list(model.predict(frames, classes=(wanted,)))
    assert all(set(r.labels.tolist()) <= {wanted} for r in only) and any(len(r) for r in only)
    with pytest.raises(DFFError, match="score_thr"):
        list(model.predict(frames, score_thr=1.5))
    with pytest.raises(DFFError, match="unknown run option"):
        list(model.predict(frames, conf=0.5))


def test_single_images_as_array_and_path(model, frames, tmp_path):
    [from_array] = model.predict(frames[0], score_thr=0.5)
    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), frames[0])
    [from_path] = model.predict(path, score_thr=0.5)
    assert from_array.is_key_frame and from_array.frame_index == 0 and len(from_array) > 0
    assert np.array_equal(from_array.boxes, from_path.boxes)
    assert from_array.names == [model.class_names[c] for c in from_array.labels]
    with pytest.raises(InputError, match="HxWx3"):
        list(model.predict(np.zeros((10, 10), np.uint8)))


def test_results_carry_time_and_draw_themselves(model, tmp_path):
    results = list(model.predict(CLIP_PATH, score_thr=0.5, keep_frames=True))
    assert results[3].time_s == pytest.approx(3 / 15, abs=1e-6)  # the clip is 15 fps
    assert [r.key_index for r in results[:12]] == [0] * 10 + [10, 10]
    picture = results[3].plot()
    assert picture.shape == results[3].image.shape and not np.array_equal(picture, results[3].image)
    # the same drawing as `dff detect --out-video` (which draws each result with plot)
    from dff.io.writers import Outputs
    from dff.pipeline import detect_source

    out = tmp_path / "v.mp4"
    detect_source(model, CLIP_PATH, Outputs(video=out), run=dff.RunOptions(score_thr=0.5))
    import av

    with av.open(str(out)) as c:
        first = next(c.decode(video=0)).to_ndarray(format="bgr24")
    assert np.abs(first.astype(int) - results[0].plot().astype(int)).mean() < 3  # equal up to the codec
    with pytest.raises(DFFError, match="keep_frames"):
        next(model.predict(CLIP_PATH)).plot()


def test_detect_source_accepts_a_path(model, tmp_path):
    from dff.io.writers import Outputs
    from dff.pipeline import DetectOptions, detect_source

    summary = detect_source(model, str(CLIP_PATH), Outputs(json=tmp_path / "d.jsonl"), DetectOptions(max_frames=3))
    assert summary.frames == 3 and len((tmp_path / "d.jsonl").read_text().splitlines()) == 3


def test_bundled_model_to_track_ids_and_supervision(model, frames, one_thread):
    pytest.importorskip("trackers", reason="the 'track' extra is not installed")
    from dff.tracking import OnlineTracker

    tracker = OnlineTracker()
    out = []
    for r in model.predict(frames[:4]):
        r = dataclasses.replace(r, track_ids=tracker.update(r.boxes, r.scores, r.labels))
        out.append((r, r.to_record(), r.to_supervision()))
    assert [d["frame"] for _, d, _ in out] == [0, 1, 2, 3]
    assert [d["key_reason"] for _, d, _ in out] == ["first", None, None, None]
    for r, d, det in out:
        assert len(d["detections"]) == len(r.scores) > 0
        assert det.tracker_id.tolist() == [x["track_id"] for x in d["detections"]] == r.track_ids.tolist()
        assert det["class_name"].tolist() == [model.class_names[c] for c in r.labels]
    # the confident objects of the clip keep their ids from the second frame on
    confident = [set(det.tracker_id[det.confidence >= 0.7].tolist()) - {-1} for _, _, det in out]
    assert confident[1] and confident[1] <= confident[3]
