"""Drawing: label placement (no label covers another or the frame marker), colours per track, flow pictures over
the frame, and the sweep plot's legend and point labels."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dff.evaluation.sweep import SweepPoint, plot_sweep, sweep_figure
from dff.io.draw import (
    class_color,
    draw_detections,
    draw_frame_marker,
    flow_picture,
    label_layout,
    marker_rect,
    place_labels,
    track_color,
)

NAMES = ("car", "person", "bicycle", "motorcycle", "domestic_cat", "giant_panda", "watercraft", "red_panda")


def intersect(a, b) -> bool:
    """Whether two (x1, y1, x2, y2) rectangles with exclusive ends share a pixel."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def crowd(n: int, seed: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`n` boxes of 30-160 pixels scattered over an image of `size` (w, h), close and overlapping, with scores,
    labels and distinct track ids."""
    rng = np.random.default_rng(seed)
    w, h = size
    xy = rng.uniform([0, 0], [w - 60, h - 60], (n, 2))
    boxes = np.concatenate([xy, np.minimum(xy + rng.uniform(30, 160, (n, 2)), [w - 1, h - 1])], 1)
    scores = rng.uniform(0.05, 1.0, n)
    return boxes, scores, rng.integers(0, len(NAMES), n), rng.permutation(1000)[:n]


# A queue of cars on bikes.mp4's 640x272 frame 45, as a person would box them, one in the top-left corner.
QUEUE = np.array(
    [
        [0, 0, 118, 118],
        [0, 95, 112, 228],
        [48, 82, 238, 258],
        [0, 160, 116, 272],
        [185, 72, 335, 232],
        [278, 52, 432, 192],
        [88, 38, 205, 112],
        [198, 32, 292, 96],
        [300, 28, 422, 82],
        [382, 4, 542, 272],
        [520, 58, 640, 272],
        [150, 120, 230, 200],
        [160, 130, 240, 210],
        [420, 100, 500, 180],
        [430, 110, 505, 185],
    ],
    np.float64,
)


@pytest.mark.parametrize(
    ("shape", "n", "seed", "at_least"),
    [
        ((272, 640, 3), 15, 0, 15),  # bikes.mp4's frame size
        ((272, 640, 3), 40, 1, 36),
        ((720, 1280, 3), 100, 2, 90),
        ((120, 160, 3), 12, 3, 6),  # more labels than fit: some are left out
    ],
)
def test_labels_of_many_close_boxes_do_not_intersect(shape, n, seed, at_least):
    boxes, scores, labels, ids = crowd(n, seed, (shape[1], shape[0]))
    texts, rects = label_layout(shape, boxes, scores, labels, NAMES, ids)
    placed = [r for r in rects.tolist() if r[0] >= 0]
    assert len(texts) == n and len(placed) >= at_least
    for a, b in itertools.combinations(placed, 2):
        assert not intersect(a, b), (a, b)
    badge = marker_rect(shape, 123456)
    for r in placed:
        assert not intersect(r, badge)
        assert 0 <= r[0] and 0 <= r[1] and r[2] <= shape[1] and r[3] <= shape[0]


def test_a_queue_of_cars_keeps_every_full_label():
    ids = np.arange(len(QUEUE)) * 3 + 13
    texts, rects = label_layout((272, 640, 3), QUEUE, np.linspace(0.95, 0.3, len(QUEUE)), np.zeros(15, int), NAMES, ids)
    assert (rects >= 0).all()  # every label found a place ...
    assert texts[0] == "#13 car 0.95" and texts[-1] == "#55 car 0.30"  # ... at full length
    for a, b in itertools.combinations(rects.tolist(), 2):
        assert not intersect(a, b)


def test_label_places_in_order_of_preference():
    size = np.array([[50, 12]])
    above = place_labels(np.array([[100, 100, 200, 150]]), size, (640, 272))
    assert above.tolist() == [[100, 88, 150, 100]]  # above the box at its left edge
    inside = place_labels(np.array([[100, 2, 200, 150]]), size, (640, 272))
    assert inside.tolist() == [[100, 0, 150, 12]]  # no room above: moved into the image, over the box's top
    # two boxes side by side, both labels wider than the boxes: the better score keeps the place above
    pair = place_labels(
        np.array([[100, 100, 130, 150], [110, 100, 140, 150]]),
        np.array([[50, 12]] * 2),
        (640, 272),
        np.array([0.2, 0.9]),
    )
    assert pair[1].tolist() == [110, 88, 160, 100]
    assert not intersect(pair[0], pair[1])
    # nothing free anywhere: left out
    none = place_labels(np.array([[0, 0, 40, 20]]), size, (60, 24), keep_clear=[(0, 0, 60, 24)])
    assert none.tolist() == [[-1, -1, -1, -1]]


def test_a_crowd_too_dense_for_full_labels_gets_short_ones():
    boxes = np.array([[20 + 6 * i, 40, 60 + 6 * i, 80] for i in range(12)], np.float64)
    texts, rects = label_layout((120, 160, 3), boxes, np.full(12, 0.5), np.full(12, 5), NAMES, np.arange(12))
    assert "#0 giant_panda 0.50" in texts and any(t.startswith("#") and " " not in t for t in texts)
    placed = [r for r in rects.tolist() if r[0] >= 0]
    for a, b in itertools.combinations(placed, 2):
        assert not intersect(a, b)


def test_the_badge_does_not_cover_a_corner_label():
    image = np.full((272, 640, 3), 60, np.uint8)
    box, score, label = np.array([[0.0, 0, 118, 118]]), np.array([0.9]), np.array([0])
    drawn = draw_detections(image, box, score, label, NAMES, np.array([13]))
    (rect,) = label_layout(image.shape, box, score, label, NAMES, np.array([13]))[1].tolist()
    x1, y1, x2, y2 = rect
    assert drawn[y1:y2, x1:x2].tolist() != image[y1:y2, x1:x2].tolist()  # the label is drawn there ...
    for frame, key in ((7, True), (123456, False)):
        marked = draw_frame_marker(drawn.copy(), frame, key)
        assert marked[3, 3].tolist() != drawn[3, 3].tolist()  # ... the badge is drawn ...
        assert np.array_equal(marked[y1:y2, x1:x2], drawn[y1:y2, x1:x2])  # ... and leaves the label alone


def test_the_label_chip_is_drawn_where_the_layout_says():
    image = np.zeros((200, 300, 3), np.uint8)
    boxes = np.array([[50.0, 60, 90, 160], [60, 60, 100, 160]])
    scores, labels, ids = np.array([0.9, 0.8]), np.array([2, 2]), np.array([4, 5])
    drawn = draw_detections(image, boxes, scores, labels, NAMES, ids, keep_clear=())
    _, rects = label_layout(image.shape, boxes, scores, labels, NAMES, ids, keep_clear=())
    for (x1, y1, x2, _), track in zip(rects.tolist(), ids.tolist()):
        assert drawn[y1, x1:x2].tolist() == [list(track_color(track))] * (x2 - x1)  # the chip's top row


def test_two_tracks_of_one_class_get_different_colours():
    image = np.zeros((200, 300, 3), np.uint8)
    boxes = np.array([[20.0, 60, 100, 160], [180, 60, 260, 160]])
    scores, labels = np.array([0.9, 0.8]), np.array([1, 1])

    def chip_colours(track_ids):
        drawn = draw_detections(image, boxes, scores, labels, NAMES, track_ids)
        rects = label_layout(image.shape, boxes, scores, labels, NAMES, track_ids)[1]
        return [drawn[y1, x1 + 1].tolist() for x1, y1, _, _ in rects.tolist()]

    assert chip_colours(np.array([3, 4])) == [list(track_color(3)), list(track_color(4))]
    assert track_color(3) != track_color(4)
    assert chip_colours(np.array([-1, -1])) == [list(class_color(1))] * 2  # no track: the class's colour
    assert len({track_color(i) for i in range(200)}) == 200


def test_flow_picture_is_smooth_over_the_dimmed_frame():
    frame = np.zeros((128, 256, 3), np.uint8)
    frame[:, 128:] = 200  # a bright right half
    flow = np.zeros((2, 8, 16), np.float32)
    flow[0, 2:6, 2:6] = 1.0  # a patch moving right, on the dark half
    pic = flow_picture(flow, (256, 128), frame=9, image=frame, arrows=False)
    assert pic.shape == (128, 256, 3)
    still = pic[64, 200]
    assert still.tolist() == [116] * 3  # still: the frame, grey and dimmed (200 / 2 + 16)
    assert pic[64, 8].tolist() == [16] * 3
    row = pic[64, :128].astype(int)
    assert row[64, 2] > row[64, 0] + 100  # the patch is red (BGR) over the dark frame
    assert len({tuple(p) for p in row[20:64].tolist()}) > 10  # a ramp, not 16-px blocks
    assert np.abs(np.diff(row[:, 2])).max() < 40
    arrows = flow_picture(flow, (256, 128), frame=9, image=frame)
    assert (arrows[56:72, 64:96] == 255).all(axis=2).any()  # a white arrow over the patch


def test_flow_picture_shows_only_the_field_over_the_image():
    flow = np.zeros((2, 4, 8), np.float32)
    flow[0, :, 6:] = 1.0  # the last two columns move right ...
    pic = flow_picture(flow, (300, 120), frame=3, coverage=(1.0, 0.75), arrows=False)  # ... and lie over padding
    assert pic.shape == (120, 300, 3)
    assert (pic[60, 10:240] == 96).all()  # grey (still) where the image is; the padding's colour is cropped away
    with pytest.raises(ValueError, match="120x60"):
        flow_picture(flow, (300, 120), frame=3, image=np.zeros((60, 120, 3), np.uint8))


def crowded_sweep() -> list[SweepPoint]:
    """Fourteen key intervals and five adaptive budgets under five protocols: close points, long labels."""
    base = {"coco_ap50": 0.74, "ilsvrc_ap50": 0.71, "motion_fast": 0.52, "motion_medium": 0.69, "motion_slow": 0.8}
    schedules = (
        ("fixed", (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 30, 50, 105), 1.0, 0.012),
        ("adaptive", (2, 5, 10, 20, 105), 0.93, 0.009),
    )
    points = []
    for policy, values, speed, loss in schedules:
        for k in values:
            fps = speed * 2.6 * k / (1 + 0.09 * (k - 1))
            ap = {p: v - loss * np.log(k) * (3 if p == "motion_fast" else 1) for p, v in base.items()}
            points.append(SweepPoint(k, fps, ap, policy, 1 / k))
    return points


def test_sweep_point_labels_do_not_collide_and_the_legend_covers_no_data(tmp_path):
    fig = sweep_figure(crowded_sweep())
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    by_fps, by_share = fig.axes
    texts = {t.get_text(): t for t in by_fps.texts}
    boxes = [t.get_window_extent(renderer).extents.tolist() for t in by_fps.texts]
    assert len(boxes) >= 40 and {"k=1", "k=105", "adaptive 10"} <= set(texts)  # some are left out
    for a, b in itertools.combinations(boxes, 2):
        assert not intersect(a, b), (a, b)
    inside = by_fps.get_window_extent(renderer).extents.tolist()
    assert all(inside[0] <= b[0] and b[2] <= inside[2] and inside[1] <= b[1] and b[3] <= inside[3] for b in boxes)
    (legend,) = fig.legends
    assert len(legend.get_texts()) == 10  # one entry per protocol and policy, for both panels
    where = legend.get_window_extent(renderer).extents.tolist()
    for ax in (by_fps, by_share):
        assert not intersect(where, ax.get_window_extent(renderer).extents.tolist())
    plot_sweep(crowded_sweep(), tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
