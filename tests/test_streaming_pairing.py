"""The streaming-AP pairing rule (mtli/sAP): a hand-computed case, the reference's own loop, and records that
score as offline results do."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest

from dff.evaluation.coco import coco_ap50
from dff.evaluation.evaluate import coco_results
from dff.evaluation.streaming import pair_outputs, paired_records, pairing_stats, shown_times

# Eight frames at 10 fps, shown at t = 0.0, 0.1, ..., 0.7 s. Five outputs (finish time, input frame):
#   o0 0.15 s (frame 0), o1 0.20 s (frame 1), o2 0.20 s (frame 2), o3 0.55 s (frame 4), o4 0.50 s (frame 5)
# o1 and o2 finish together, exactly when frame 2 is shown; o4 is listed after o3 but finished before it.
FINISH = [0.15, 0.2, 0.2, 0.55, 0.5]
INPUT_FRAME = [0, 1, 2, 4, 5]
# By hand:
#   frame 0 (0.0 s), frame 1 (0.1 s): nothing finished yet (o0 at 0.15 s)             -> None, None
#   frame 2 (0.2 s): o0, o1, o2 finished (o1, o2 exactly at 0.2 s: "<=" counts them);
#                    the latest finish is 0.2 s, shared by o1 and o2: the one listed last -> 2
#   frames 3, 4 (0.3, 0.4 s): nothing new                                              -> 2, 2
#   frame 5 (0.5 s): o4 finished at 0.5 s exactly                                      -> 4
#   frames 6, 7 (0.6, 0.7 s): o3 finished at 0.55 s, after o4 (though it was listed first and is for an older
#                    frame, 4 against 5): the latest finished output                   -> 3, 3
EXPECTED = [None, None, 2, 2, 2, 4, 3, 3]


def test_hand_computed_pairs():
    times = shown_times(range(8), fps=10)
    assert times == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    assert pair_outputs(times, FINISH) == EXPECTED
    assert pair_outputs(times[::-1], FINISH) == EXPECTED[::-1]  # frames in any order
    assert pair_outputs(times, []) == [None] * 8  # no output at all: every frame gets no detections
    # eta = -1 (the reference's one-frame grace): frame i is judged at (i + 1) / 10 s.
    assert pair_outputs(shown_times(range(8), fps=10, eta=-1), FINISH) == [None, 2, 2, 2, 4, 3, 3, 3]
    with pytest.raises(ValueError, match="finite"):
        pair_outputs(times, [0.1, float("nan")])


def test_hand_computed_stats():
    # Paired frames 2..7 with outputs of input frames 2, 2, 2, 5, 4, 4: delays 0, 1, 2, 0, 2, 3 (sum 8 over 6);
    # in time (own input frame): frames 2 and 5; missed: frames 0 and 1.
    stats = pairing_stats(EXPECTED, list(range(8)), INPUT_FRAME)
    assert (stats.frames, stats.missed, stats.in_time) == (8, 2, 2)
    assert stats.mean_delay_frames == pytest.approx(8 / 6)
    assert pairing_stats([None, None], [0, 1], []).mean_delay_frames is None


def reference_pairs(frame_times: list[float], timestamps: list[float]) -> list[int | None]:
    """mtli/sAP det/streaming_eval.py's loop, verbatim but for the bookkeeping (timestamps in finishing order)."""
    out = []
    tidx_p1 = 0
    for t in frame_times:
        while tidx_p1 < len(timestamps) and timestamps[tidx_p1] <= t:
            tidx_p1 += 1
        out.append(None if tidx_p1 == 0 else tidx_p1 - 1)
    return out


def test_same_as_the_reference_loop():
    rng = random.Random(0)
    for _ in range(300):
        fps = rng.choice([10, 25, 30])
        times = shown_times(range(rng.randint(1, 40)), fps)
        # Finish times on a coarse grid, so that ties with each other and with frame times are common.
        finish = sorted(rng.randint(0, 50) / fps for _ in range(rng.randint(0, 30)))
        assert pair_outputs(times, finish) == reference_pairs(times, finish)


def test_records_carry_the_paired_detections_and_score_as_offline_results():
    """Three frames at 10 fps, one object per frame at the same place; the detector's first output (frame 0,
    finished at 0.08 s) is too late for frame 0 and used for frames 1 and 2: 2 of 3 objects found, no false
    positive, so COCO AP50 = 67 of its 101 recall points (0, 0.01, ..., 0.66 <= 2/3) = 0.6634."""
    images = [{"id": 10 + i, "frame_id": i} for i in range(3)]
    box = np.array([[10.0, 10.0, 50.0, 40.0]], np.float32)
    outputs = [
        SimpleNamespace(boxes=box, scores=np.array([0.9], np.float32), labels=np.array([0]), is_key_frame=True),
        SimpleNamespace(boxes=box[:0], scores=np.zeros(0, np.float32), labels=np.zeros(0, np.int64)),
    ]
    records = paired_records(7, images, shown_times([0, 1, 2], fps=10), outputs, [0.08, 0.35])
    assert [(r.video_id, r.image_id, r.frame_index, r.is_key_frame, len(r.boxes)) for r in records] == [
        (7, 10, 0, False, 0),
        (7, 11, 1, True, 1),
        (7, 12, 2, True, 1),
    ]
    empty = records[0]
    assert (empty.boxes.shape, empty.boxes.dtype, empty.scores.dtype, empty.labels.dtype) == (
        (0, 4),
        np.float32,
        np.float32,
        np.int64,
    )
    annotations = [{"image_id": im["id"], "category_id": 1, "bbox": [10, 10, 40, 30]} for im in images]
    ap = coco_ap50(images, annotations, coco_results(records), num_classes=1)
    assert ap.mean == pytest.approx(67 / 101)
    with pytest.raises(ValueError, match="one time per frame"):
        paired_records(7, images, [0.0], outputs, [0.08, 0.35])
