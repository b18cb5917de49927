"""FrameResult.to_dict (JSON-ready, float32 values kept exactly) and FrameResult.to_supervision (sv.Detections with
class ids, confidences, tracker ids), on hand-made results and on the bundled model's output, and their errors."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest

from dff.api import FrameResult
from dff.errors import DFFError, InputError

NAMES = ("car", "dog", "bird")


def result(track_ids: np.ndarray | None = None) -> FrameResult:
    return FrameResult(
        boxes=np.array([[1.5, 2.25, 30.1, 40.7], [100.0, 5.0, 120.3, 9.9]], dtype=np.float32),
        scores=np.array([0.9, 0.3], dtype=np.float32),
        labels=np.array([2, 0], dtype=np.int64),
        frame_index=7,
        is_key_frame=False,
        key_reason=None,
        track_ids=track_ids,
    )


def test_to_dict_is_json_and_keeps_the_values():
    r = result(np.array([4, -1], dtype=np.int64))
    d = json.loads(json.dumps(r.to_dict(NAMES)))
    assert d["frame_index"] == 7 and d["is_key_frame"] is False and d["key_reason"] is None
    assert np.array_equal(np.array(d["boxes"], dtype=np.float32), r.boxes)
    assert np.array_equal(np.array(d["scores"], dtype=np.float32), r.scores)
    assert d["labels"] == [2, 0]
    assert d["class_names"] == ["bird", "car"]
    assert d["track_ids"] == [4, -1]


def test_to_dict_leaves_out_what_is_not_there():
    d = result().to_dict()
    assert "class_names" not in d and "track_ids" not in d and "flow" not in d
    empty = FrameResult(
        np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), 0, True, key_reason="first"
    )
    assert empty.to_dict(NAMES) == {
        "frame_index": 0,
        "is_key_frame": True,
        "key_reason": "first",
        "boxes": [],
        "scores": [],
        "labels": [],
        "class_names": [],
    }


def test_a_label_outside_the_class_names_is_an_error():
    with pytest.raises(InputError, match="frame 7: label 2 is not among the 2 classes"):
        result().to_dict(NAMES[:2])
    with pytest.raises(InputError, match="frame 7: 3 track ids for 2 detections"):
        result(np.array([1, 2, 3])).to_dict()


def test_to_supervision():
    sv = pytest.importorskip("supervision", reason="the 'track' extra is not installed")
    r = result(np.array([4, -1], dtype=np.int64))
    det = r.to_supervision(NAMES)
    assert isinstance(det, sv.Detections) and len(det) == 2
    assert np.array_equal(det.xyxy, r.boxes) and np.array_equal(det.confidence, r.scores)
    assert det.class_id.tolist() == [2, 0] and det.tracker_id.tolist() == [4, -1]
    assert det["class_name"].tolist() == ["bird", "car"]
    plain = result().to_supervision()
    assert plain.tracker_id is None and "class_name" not in plain.data
    assert len(det[det.confidence > 0.5]) == 1  # supervision's own filtering works on it


def test_to_supervision_without_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "supervision", None)  # `import supervision` now raises ImportError
    with pytest.raises(DFFError, match=r"needs the optional 'track' extra .*pip install 'deep-feature-flow\[track\]'"):
        result().to_supervision()


def test_bundled_model_to_track_ids_and_supervision(one_thread):
    pytest.importorskip("trackers", reason="the 'track' extra is not installed")
    import dff
    from dff.cli.demo import CLIP_PATH, MODEL_PATH
    from dff.io.sources import open_source
    from dff.tracking import OnlineTracker

    model = dff.load(MODEL_PATH, preset="tiny_synthetic")
    with open_source(CLIP_PATH) as src:
        frames = [f.image for _, f in zip(range(4), src)]
    tracker = OnlineTracker()
    out = []
    for r in model.predict(frames):
        r = dataclasses.replace(r, track_ids=tracker.update(r.boxes, r.scores, r.labels))
        out.append((r, r.to_dict(model.class_names), r.to_supervision(model.class_names)))
    assert [d["frame_index"] for _, d, _ in out] == [0, 1, 2, 3]
    assert [d["key_reason"] for _, d, _ in out] == ["first", None, None, None]
    for r, d, det in out:
        assert len(d["boxes"]) == len(r.scores) > 0
        assert det.tracker_id.tolist() == d["track_ids"] == r.track_ids.tolist()
        assert det["class_name"].tolist() == [model.class_names[c] for c in r.labels]
    # the confident objects of the clip keep their ids from the second frame on
    confident = [set(det.tracker_id[det.confidence >= 0.7].tolist()) - {-1} for _, _, det in out]
    assert confident[1] and confident[1] <= confident[3]
