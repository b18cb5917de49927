"""Seq-NMS: hand-built sequences with known rescoring, a brute-force reference, and its properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dff.errors import InputError
from dff.tracking.seq_nms import SeqNMSConfig, _pairwise_iou, seq_nms


def frame(boxes, scores, labels):
    return (np.array(boxes, dtype=np.float32).reshape(-1, 4), np.array(scores, np.float32), np.array(labels))


def by_input(result, t):
    """{input index: new score} of frame t."""
    return {int(k): float(s) for k, s in zip(result[t].keep, result[t].scores)}


# Class 0 object A drifts right by 1 px a frame (consecutive IoU 90/110 = 0.82); in frame 1 a box B of the same
# class sits 3 px right of A0: IoU(B, A0) = 70/130 = 0.54 and IoU(B, A2) = 90/110 = 0.82 (both linked), IoU(B, A1)
# = 80/120 = 0.67 (> 0.3). The best path is A0-B-A2 (0.9+0.5+0.6 = 2.0 > A0-A1-A2, 1.8); it suppresses A1.
# C (class 1, on A1) and D (class 0, far away) link to nothing: sequences of one.
HAND = [
    frame([[0, 0, 10, 10]], [0.9], [0]),
    frame([[1, 0, 11, 10], [3, 0, 13, 10], [1, 0, 11, 10]], [0.3, 0.5, 0.2], [0, 0, 1]),
    frame([[2, 0, 12, 10], [50, 50, 60, 60]], [0.6, 0.7], [0, 0]),
]


def test_hand_built_average_rescoring_and_suppression():
    out = seq_nms(HAND, SeqNMSConfig(rescore="avg"))
    path = pytest.approx((0.9 + 0.5 + 0.6) / 3, abs=1e-6)
    assert by_input(out, 0) == {0: path}
    assert by_input(out, 1) == {1: path, 2: pytest.approx(0.2)}  # A1 (index 0) suppressed, C kept
    assert by_input(out, 2) == {0: path, 1: pytest.approx(0.7)}
    assert out[0].sequence[0] == out[1].sequence[list(out[1].keep).index(1)] == out[2].sequence[1]
    assert len({int(s) for f in out for s in f.sequence}) == 3  # the path, C, D
    np.testing.assert_array_equal(out[1].boxes, HAND[1][0][out[1].keep])
    assert list(out[2].keep) == [1, 0] and out[2].scores[0] >= out[2].scores[1]  # sorted by new score


def test_hand_built_max_rescoring():
    out = seq_nms(HAND, SeqNMSConfig(rescore="max"))
    assert by_input(out, 0) == {0: pytest.approx(0.9)}
    assert by_input(out, 1) == {1: pytest.approx(0.9), 2: pytest.approx(0.2)}
    assert by_input(out, 2) == {0: pytest.approx(0.9), 1: pytest.approx(0.7)}


def test_own_weight_and_smoothing_on_the_hand_built_path():
    # The path A0-B-A2 of HAND: scores 0.9, 0.5, 0.6 (sequence average 2/3); x1 of its boxes 0, 3, 2.
    out = seq_nms(HAND, SeqNMSConfig(own_weight=0.25, smooth=1))
    mean = (0.9 + 0.5 + 0.6) / 3
    assert by_input(out, 0)[0] == pytest.approx(0.25 * 0.9 + 0.75 * mean, abs=1e-6)
    assert by_input(out, 1)[1] == pytest.approx(0.25 * 0.5 + 0.75 * mean, abs=1e-6)
    x1 = {t: float(out[t].boxes[list(out[t].keep).index(i), 0]) for t, i in ((0, 0), (1, 1), (2, 0))}
    assert x1[0] == pytest.approx((0.9 * 0 + 0.5 * 3) / 1.4, abs=1e-5)  # window frames 0-1
    assert x1[1] == pytest.approx((0.9 * 0 + 0.5 * 3 + 0.6 * 2) / 2.0, abs=1e-5)  # frames 0-2
    assert x1[2] == pytest.approx((0.5 * 3 + 0.6 * 2) / 1.1, abs=1e-5)  # frames 1-2
    c = list(out[1].keep).index(2)  # C, a sequence of one: its own score and box
    assert out[1].scores[c] == pytest.approx(0.2) and list(out[1].boxes[c]) == [1, 0, 11, 10]
    plain = seq_nms(HAND, SeqNMSConfig(own_weight=1.0))
    for t in range(3):
        np.testing.assert_array_equal(plain[t].scores, HAND[t][1][plain[t].keep])


def test_smoothing_brings_jittered_boxes_closer_to_the_true_path():
    rng = np.random.default_rng(0)
    truth = np.array([[5.0 * t, 10.0, 5.0 * t + 60, 70.0] for t in range(30)])
    noisy = truth + rng.normal(0, 2.0, truth.shape)
    video = [frame([b], [0.5 + 0.4 * rng.random()], [0]) for b in noisy]
    errors = {}
    for smooth in (0, 2):
        out = seq_nms(video, SeqNMSConfig(smooth=smooth))
        boxes = np.stack([f.boxes[0] for f in out])
        assert len({int(f.sequence[0]) for f in out}) == 1  # one sequence through all frames
        errors[smooth] = float(np.abs(boxes - truth).mean())
    assert errors[0] == pytest.approx(float(np.abs(noisy.astype(np.float32) - truth).mean()), rel=1e-5)
    assert errors[2] < 0.7 * errors[0]


def test_second_pass_finds_the_next_sequence_and_classes_stay_apart():
    # Two class-0 objects far apart and one class-1 object on top of the first: three sequences, own averages.
    a, b = [0, 0, 20, 20], [100, 100, 130, 130]
    video = [frame([a, b, a], [0.8, 0.4, 0.1], [0, 0, 1]), frame([a, b, a], [0.6, 0.2, 0.5], [0, 0, 1])]
    out = seq_nms(video)
    for t in range(2):
        assert by_input(out, t) == {0: pytest.approx(0.7), 1: pytest.approx(0.3), 2: pytest.approx(0.3)}


def test_paths_through_suppressed_boxes_are_recomputed_downstream():
    # Class 0: P (frames 0-1, 0.9 each) wins first and suppresses X (frame 1, linked from P0). Before that, the best
    # path to W ran P0-X-Y-Z-W (1.45). After it, Y-Z-W is worth only 0.45, less than Q (frame 3, 0.5), which
    # overlaps Z (IoU 0.54) but links to neither Y nor W (IoU 0.39): Q goes first and suppresses Z, so Y and W
    # end as sequences of one. A stale 1.45 three frames after P would have taken Y-Z-W first instead.
    video = [
        frame([[0, 0, 10, 10]], [0.9], [0]),
        frame([[0, 0, 10, 10], [3, 0, 13, 10]], [0.9, 0.1], [0, 0]),
        frame([[5, 0, 15, 10]], [0.15], [0]),
        frame([[7, 0, 17, 10], [7, 3, 17, 13]], [0.15, 0.5], [0, 0]),
        frame([[9, 0, 19, 10]], [0.15], [0]),
    ]
    out = seq_nms(video)
    expected = [{0: 0.9}, {0: 0.9}, {0: 0.15}, {1: 0.5}, {0: 0.15}]
    assert [by_input(out, t) for t in range(5)] == [{k: pytest.approx(v) for k, v in e.items()} for e in expected]


def test_link_threshold_is_inclusive_and_suppression_strict():
    # IoU of [0,0,10,10] and [0,0,10,20] is exactly 0.5: linked at link_iou=0.5.
    video = [frame([[0, 0, 10, 10]], [0.8], [0]), frame([[0, 0, 10, 20]], [0.2], [0])]
    assert by_input(seq_nms(video), 1) == {0: pytest.approx(0.5)}
    assert by_input(seq_nms(video, SeqNMSConfig(link_iou=0.51)), 1) == {0: pytest.approx(0.2)}
    # Same frame, IoU exactly 0.5: suppressed at suppress_iou=0.3, both kept at suppress_iou=0.5.
    same = [frame([[0, 0, 10, 10], [0, 0, 10, 20]], [0.8, 0.2], [0, 0])]
    assert list(seq_nms(same)[0].keep) == [0]
    assert list(seq_nms(same, SeqNMSConfig(suppress_iou=0.5))[0].keep) == [0, 1]


def test_empty_video_and_empty_frames():
    assert seq_nms([]) == []
    empty = frame(np.zeros((0, 4)), [], [])
    out = seq_nms([empty, frame([[0, 0, 5, 5]], [0.4], [3]), empty])
    assert [len(f.keep) for f in out] == [0, 1, 0] and out[1].scores[0] == pytest.approx(0.4)
    assert out[1].labels.dtype == np.int64 and out[1].boxes.dtype == np.float32


def test_bad_input_is_refused():
    with pytest.raises(InputError, match="frame 1 has boxes"):
        seq_nms([frame([[0, 0, 1, 1]], [0.5], [0]), (np.zeros((2, 4)), np.zeros(3), np.zeros(2))])
    with pytest.raises(InputError, match="negative or non-finite"):
        seq_nms([frame([[0, 0, 1, 1]], [-0.5], [0])])
    with pytest.raises(InputError, match="rescore"):
        SeqNMSConfig(rescore="median")
    with pytest.raises(InputError, match="own_weight"):
        SeqNMSConfig(own_weight=1.5)
    with pytest.raises(InputError, match="smooth"):
        SeqNMSConfig(smooth=-1)
    with pytest.raises(InputError, match="smooth"):
        SeqNMSConfig(smooth=1.5)


def reference_seq_nms(video, cfg):
    """The paper's loop written plainly: full dynamic programme over dicts, recomputed after every selection."""
    alive = {(t, i) for t, (b, _, _) in enumerate(video) for i in range(len(b))}
    new, seq = {}, {}
    while alive:
        best, prev = {}, {}
        for t, (b, s, lab) in enumerate(video):
            for i in range(len(b)):
                if (t, i) not in alive:
                    continue
                best[t, i], prev[t, i] = float(s[i]), None
                if t == 0:
                    continue
                pb, _, pl = video[t - 1]
                for j in range(len(pb)):
                    ok = (t - 1, j) in alive and pl[j] == lab[i]
                    if ok and _pairwise_iou(pb[j : j + 1], b[i : i + 1])[0, 0] >= cfg.link_iou:
                        if float(s[i]) + best[t - 1, j] > best[t, i]:
                            best[t, i], prev[t, i] = float(s[i]) + best[t - 1, j], (t - 1, j)
        node = max(best, key=best.get)
        path = [node]
        while prev[path[-1]] is not None:
            path.append(prev[path[-1]])
        vals = [float(video[t][1][i]) for t, i in path]
        score = np.mean(vals) if cfg.rescore == "avg" else max(vals)
        for t, i in path:
            b, _, lab = video[t]
            new[t, i], seq[t, i] = score, len(set(seq.values()))
            for j in range(len(b)):
                if (
                    (t, j) in alive
                    and lab[j] == lab[i]
                    and _pairwise_iou(b[i : i + 1], b[j : j + 1])[0, 0] > cfg.suppress_iou
                ):
                    alive.discard((t, j))
            alive.discard((t, i))
    return new


def random_video(rng, frames, per_frame, classes):
    """Drifting objects with noisy boxes and scores plus clutter: many links, overlaps and suppressions."""
    video = []
    base = rng.uniform(0, 40, (per_frame, 2))
    size = rng.uniform(8, 30, (per_frame, 2))
    labels = rng.integers(0, classes, per_frame)
    for t in range(frames):
        n = int(rng.integers(per_frame // 2, per_frame + 1))
        xy = base[:n] + t * 1.5 + rng.normal(0, 3, (n, 2))
        boxes = np.concatenate([xy, xy + size[:n]], axis=1)
        video.append((boxes, rng.uniform(0.01, 1, n), labels[:n].copy()))
    return video


@pytest.mark.parametrize("rescore", ["avg", "max"])
@pytest.mark.parametrize("seed", range(6))
def test_matches_the_plain_reference(seed, rescore):
    rng = np.random.default_rng(seed)
    cfg = SeqNMSConfig(rescore=rescore)
    video = random_video(rng, frames=8, per_frame=10, classes=2)
    expected = reference_seq_nms(video, cfg)
    got = {(t, int(k)): float(s) for t, f in enumerate(seq_nms(video, cfg)) for k, s in zip(f.keep, f.scores)}
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0.05, 1.0), min_size=2, max_size=8),
    st.integers(0, 7),
    st.floats(0.0, 40.0),
    st.integers(0, 10_000),
)
def test_consistent_object_beats_a_flicker_and_kept_boxes_do_not_overlap(scores, flicker_at, dx, seed):
    """A linked object's weakest frame ends above a one-frame flicker of the same score; same-class boxes kept in
    a frame never overlap above suppress_iou; every kept box is an input box."""
    rng = np.random.default_rng(seed)
    n = len(scores)
    flicker_at %= n
    weakest = float(min(scores))
    video = []
    for t, s in enumerate(scores):
        obj = [100 + 2 * t, 100, 140 + 2 * t, 130]
        boxes, ss, labels = [obj], [s], [0]
        if t == flicker_at:
            boxes.append([300 + dx, 10, 340 + dx, 50])
            ss.append(weakest)
            labels.append(0)
        for _ in range(int(rng.integers(0, 3))):  # duplicates around the object, some of them suppressed
            jitter = rng.uniform(-15, 15, 4)
            boxes.append(list(np.array(obj) + jitter))
            ss.append(float(rng.uniform(0.01, 1)))
            labels.append(int(rng.integers(0, 2)))
        video.append(frame(boxes, ss, labels))
    cfg = SeqNMSConfig()
    out = seq_nms(video, cfg)
    flicker_index = 1
    flicker = by_input(out, flicker_at)[flicker_index]
    assert flicker == pytest.approx(weakest)
    chain = {int(f.sequence[list(f.keep).index(0)]) for f in out if 0 in f.keep}
    if len(chain) == 1 and all(0 in f.keep for f in out) and max(scores) > weakest + 1e-3:
        assert min(by_input(out, t)[0] for t in range(n)) > flicker
    for t, f in enumerate(out):
        np.testing.assert_array_equal(f.boxes, video[t][0][f.keep])
        iou = _pairwise_iou(f.boxes.astype(np.float64), f.boxes.astype(np.float64))
        same = (f.labels[:, None] == f.labels[None, :]) & ~np.eye(len(f.keep), dtype=bool)
        assert not (same & (iou > cfg.suppress_iou)).any()
