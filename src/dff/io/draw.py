"""Pictures of results: boxes with class names, scores and track ids, track trails, a key-frame marker, and flow
fields drawn over the frame.

Labels never overlap: `place_labels` puts them greedily, highest score first, at the first free place around their
box (above it, inside it at the top, below it, inside it at the bottom, each at its left edge first and then along
the edge, then down its sides), clear of the frame marker's corner (`marker_rect`). A label that fits nowhere is
shortened to its track id (or class name), and left out if even that fits nowhere. With tracking a box, its label
and its trail take the track's colour, else the class's colour.

Flow colours follow the usual colour-wheel convention: the hue gives the direction of the flow vector, the
saturation its magnitude (white = still), normalised by the largest motion in the field unless a fixed
`max_magnitude` is given. `flow_picture` blends the fully saturated hue over the dimmed, grey frame, more opaque
where the flow is larger, and adds sparse arrows.
"""

from __future__ import annotations

import colorsys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

KEY_COLOR = (40, 40, 230)  # BGR red
WARP_COLOR = (140, 140, 140)
GREY = 96  # the flow picture's background without a frame, and its legend's
FONT = cv2.FONT_HERSHEY_SIMPLEX
GOLDEN = 0.618033988749895
Rect = tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels, the ends exclusive


def class_color(class_id: int) -> tuple[int, int, int]:
    """A bright BGR colour per class, well spread around the hue circle (golden-ratio steps)."""
    r, g, b = colorsys.hsv_to_rgb((class_id * GOLDEN) % 1.0, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def track_color(track_id: int) -> tuple[int, int, int]:
    """A BGR colour per track id: golden-ratio hue steps (so ids close in number get far-apart hues), started half
    a turn away from the class colours, and every other id a little paler."""
    saturation = 0.9 if track_id % 2 == 0 else 0.6
    r, g, b = colorsys.hsv_to_rgb((0.5 + track_id * GOLDEN) % 1.0, saturation, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def _ink(color: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white text, whichever reads better on a chip of `color` (BGR)."""
    b, g, r = color
    return (0, 0, 0) if 0.114 * b + 0.587 * g + 0.299 * r >= 110 else (255, 255, 255)


def _scale(image_shape: tuple[int, ...]) -> float:
    """Line and font scale for an image of `image_shape`: 1.0 at 720 pixels on the short side, never below 0.7
    (legible)."""
    return max(0.7, min(image_shape[:2]) / 720.0)


@dataclass(frozen=True)
class _LabelStyle:
    """How labels are drawn on an image: box line, font, and chips of one height with the text's baseline at
    `baseline` below their top."""

    thickness: int
    font_scale: float
    text_thickness: int
    chip_height: int
    baseline: int

    @classmethod
    def of(cls, image_shape: tuple[int, ...]) -> _LabelStyle:
        s = _scale(image_shape)
        thickness = max(1, round(2 * s))
        font_scale, text_thickness = 0.6 * s, max(1, thickness - 1)
        (_, th), descent = cv2.getTextSize("Ag_y", FONT, font_scale, text_thickness)
        return cls(thickness, font_scale, text_thickness, th + descent + 3, th + 1)

    def chip_size(self, text: str) -> tuple[int, int]:
        """(w, h) of the chip that holds `text`: 2 pixels either side."""
        (tw, _), _ = cv2.getTextSize(text, FONT, self.font_scale, self.text_thickness)
        return tw + 4, self.chip_height


def place_labels(
    boxes: np.ndarray,
    sizes: np.ndarray,
    image_size: tuple[int, int],
    scores: np.ndarray | None = None,
    keep_clear: Sequence[Rect] = (),
) -> np.ndarray:
    """Where each box's label goes: an (n, 4) int array of rectangles (x1, y1, x2, y2, ends exclusive) inside an
    image of `image_size` (w, h), row i for box i (xyxy) and its label of size `sizes[i]` (w, h); a row of -1 for a
    label that fits nowhere.

    Greedy, highest score first (row order without `scores`): each label takes the first of its candidate places
    that keeps a 1-pixel gap from every label already placed and every `keep_clear` rectangle. Candidates, each
    moved inside the image: above the box (at its left edge, right-aligned, centred, then in steps of half the
    label along it), then at the same positions inside the box at its top, below the box, inside it at its bottom,
    then down the box's sides inside it and outside it.
    """
    corners = np.rint(np.asarray(boxes, np.float64).reshape(-1, 4)).astype(np.int64).tolist()
    sizes = np.asarray(sizes, np.int64).reshape(-1, 2).tolist()
    n = len(corners)
    order = range(n) if scores is None else np.argsort(-np.asarray(scores, np.float64), kind="stable")
    taken = np.zeros((n + len(keep_clear), 4), np.int64)
    taken[: len(keep_clear)] = np.asarray(keep_clear, np.int64).reshape(-1, 4)
    count = len(keep_clear)
    placed = np.full((n, 4), -1, np.int64)
    width, height = image_size
    for i in order:
        w, h = sizes[i]
        xy = _candidates(*corners[i], w, h)
        x = np.minimum(np.maximum(xy[:, 0], 0), max(0, width - w))[:, None]
        y = np.minimum(np.maximum(xy[:, 1], 0), max(0, height - h))[:, None]
        t = taken[:count].T
        clash = ((x <= t[2]) & (t[0] <= x + w) & (y <= t[3]) & (t[1] <= y + h)).any(axis=1)
        free = np.flatnonzero(~clash)
        if len(free):
            j = free[0]
            placed[i] = taken[count] = (x[j, 0], y[j, 0], x[j, 0] + w, y[j, 0] + h)
            count += 1
    return placed


def _candidates(x1: int, y1: int, x2: int, y2: int, w: int, h: int) -> np.ndarray:
    """The (x, y) top-left corners `place_labels` tries for a (w, h) label of the box (x1, y1, x2, y2), best
    first."""
    step = max(4, w // 2)
    xs = [x1, x2 - w, (x1 + x2 - w) // 2, *range(x1 + step, x2 - w, step)]
    top = [(x, y) for y in (y1 - h, y1) for x in xs]
    bottom = [(x, y) for y in (y2, y2 - h) for x in xs]
    rows = range(y1 + h, y2 - h, h)
    sides = [(x, y) for x in (x1, x2 - w, x1 - w, x2) for y in rows]
    return np.array(top + bottom + sides, np.int64)


def marker_rect(image_shape: tuple[int, ...], frame: int = 0) -> Rect:
    """The frame marker's badge in the top-left corner of an image of `image_shape`: as wide as 'flow 999999'
    needs (the place `draw_detections` keeps clear of labels), wider only for a longer frame number."""
    s = _scale(image_shape)
    font_scale, thickness = 0.7 * s, max(1, round(2 * s))
    pad = max(3, round(6 * s))
    (tw, th), base = cv2.getTextSize(f"flow {max(frame, 999999)}", FONT, font_scale, thickness)
    return 0, 0, tw + 2 * pad, th + base + 2 * pad


def _track_ids(track_ids: np.ndarray | None, n: int) -> list[int]:
    """The track id of each of `n` boxes, -1 for none."""
    return [-1] * n if track_ids is None else [int(t) for t in np.asarray(track_ids).reshape(-1).tolist()]


def _label_texts(
    scores: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...], track_ids: np.ndarray | None
) -> tuple[list[str], list[str]]:
    """Each box's label, '#7 name 0.87' (untracked: 'name 0.87'), and its short form, '#7' (untracked: 'name')."""
    ids = _track_ids(track_ids, len(scores))
    names = [class_names[int(c)] for c in np.asarray(labels).tolist()]
    full = [
        f"{n} {s:.2f}" if t < 0 else f"#{t} {n} {s:.2f}" for n, s, t in zip(names, np.asarray(scores).tolist(), ids)
    ]
    return full, [n if t < 0 else f"#{t}" for n, t in zip(names, ids)]


def label_layout(
    image_shape: tuple[int, ...],
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    class_names: tuple[str, ...],
    track_ids: np.ndarray | None = None,
    keep_clear: Sequence[Rect] | None = None,
) -> tuple[list[str], np.ndarray]:
    """The labels `draw_detections` draws on an image of `image_shape`: each box's text and its rectangle
    ((n, 4) ints, x1, y1, x2, y2, ends exclusive; a row of -1 where the label is left out).

    Labels are placed by `place_labels` clear of each other and of `keep_clear` (default: the frame marker's
    corner, `marker_rect`); those that fit nowhere are shortened ('#7', or the class name without a track) and
    placed again around the others, and left out if they still fit nowhere.
    """
    style = _LabelStyle.of(image_shape)
    size = (image_shape[1], image_shape[0])
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    texts, short = _label_texts(scores, labels, class_names, track_ids)
    clear = [marker_rect(image_shape)] if keep_clear is None else list(keep_clear)
    rects = place_labels(boxes, [style.chip_size(t) for t in texts], size, scores, clear)
    missing = np.flatnonzero(rects[:, 0] < 0)
    if len(missing):
        clear += [tuple(r) for r in rects[rects[:, 0] >= 0].tolist()]
        sizes = [style.chip_size(short[i]) for i in missing]
        rects[missing] = place_labels(boxes[missing], sizes, size, scores[missing], clear)
        for i in missing:
            texts[i] = short[i]
    return texts, rects


def draw_detections(
    image: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    class_names: tuple[str, ...],
    track_ids: np.ndarray | None = None,
    *,
    keep_clear: Sequence[Rect] | None = None,
) -> np.ndarray:
    """A copy of the BGR `image` with each box (xyxy, original pixels) and its 'name 0.87' label drawn, prefixed
    by '#7 ' when `track_ids` gives the box a track (ids < 0 are in no track).

    A tracked box and its label take the track's colour (`track_color`), any other box its class's
    (`class_color`). Boxes are drawn first (the best-scoring on top), then the labels where `label_layout` puts
    them: none covers another, nor a `keep_clear` rectangle (default: the frame marker's corner; pass () to use
    the whole image); one that fits nowhere is shortened to '#7' (without a track: the class name), or left out.
    """
    out = image.copy()
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    if len(scores) == 0:
        return out
    style = _LabelStyle.of(out.shape)
    ids = _track_ids(track_ids, len(scores))
    colors = [track_color(t) if t >= 0 else class_color(int(c)) for t, c in zip(ids, np.asarray(labels).tolist())]
    corners = np.rint(boxes).astype(np.int64).tolist()
    for i in np.argsort(scores, kind="stable").tolist():
        x1, y1, x2, y2 = corners[i]
        cv2.rectangle(out, (x1, y1), (x2, y2), colors[i], style.thickness, cv2.LINE_AA)
    texts, rects = label_layout(out.shape, boxes, scores, labels, class_names, track_ids, keep_clear)
    for i in np.flatnonzero(rects[:, 0] >= 0):
        x1, y1, x2, y2 = rects[i].tolist()
        cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), colors[i], cv2.FILLED)
        origin = (x1 + 2, y1 + style.baseline)
        cv2.putText(out, texts[i], origin, FONT, style.font_scale, _ink(colors[i]), style.text_thickness, cv2.LINE_AA)
    return out


class TrackTrails:
    """The box centres of each track over its last `length` frames, drawn as a polyline per track (in the track's
    colour, as `draw_detections` draws its box); feed every frame in order with :meth:`update`."""

    def __init__(self, length: int = 20) -> None:
        self.length = length
        self._points: dict[int, deque[tuple[int, tuple[int, int]]]] = {}
        self._frame = -1

    def update(self, boxes: np.ndarray, track_ids: np.ndarray) -> None:
        """Add one frame's tracked boxes (ids < 0 are ignored); tracks unseen for `length` frames are dropped."""
        self._frame += 1
        for (x1, y1, x2, y2), track_id in zip(np.asarray(boxes).tolist(), np.asarray(track_ids).tolist()):
            if track_id >= 0:
                trail = self._points.setdefault(int(track_id), deque(maxlen=self.length))
                trail.append((self._frame, (int(round((x1 + x2) / 2)), int(round((y1 + y2) / 2)))))
        old = [k for k, trail in self._points.items() if trail[-1][0] <= self._frame - self.length]
        for k in old:
            del self._points[k]

    def draw(self, image: np.ndarray, track_ids: np.ndarray) -> np.ndarray:
        """Draw in place the trails of the tracks in `track_ids` (those of the current frame)."""
        thickness = max(1, round(2 * _scale(image.shape)))
        for track_id in {int(i) for i in np.asarray(track_ids).tolist() if i >= 0}:
            points = [p for frame, p in self._points.get(track_id, ()) if frame > self._frame - self.length]
            if len(points) > 1:
                cv2.polylines(image, [np.array(points, np.int32)], False, track_color(track_id), thickness, cv2.LINE_AA)
        return image


def draw_frame_marker(image: np.ndarray, frame: int, is_key_frame: bool) -> np.ndarray:
    """Draw in place, top-left on the `marker_rect` badge, 'KEY <frame>' in red for key frames, 'flow <frame>' in
    grey otherwise."""
    s = _scale(image.shape)
    font_scale, thickness = 0.7 * s, max(1, round(2 * s))
    pad = max(3, round(6 * s))
    x1, y1, x2, y2 = marker_rect(image.shape, frame)
    cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), KEY_COLOR if is_key_frame else WARP_COLOR, cv2.FILLED)
    (_, th), _ = cv2.getTextSize("0", FONT, font_scale, thickness)
    text = f"{'KEY' if is_key_frame else 'flow'} {frame}"
    cv2.putText(image, text, (pad, pad + th), FONT, font_scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return image


FLOW_OPACITY = 0.8  # in `flow_picture`: the colour's opacity over the frame at the field's longest vector


def flow_to_color(
    flow: np.ndarray, max_magnitude: float | None = None, background: np.ndarray | None = None, opacity: float = 1.0
) -> np.ndarray:
    """A (2, h, w) flow field (channel 0 = x, 1 = y) as a uint8 BGR (h, w, 3) colour-wheel image: the fully
    saturated hue of each vector's direction laid over `background` (BGR (h, w, 3); default white, which makes the
    magnitude the saturation), as opaque as the vector is long relative to `max_magnitude` (default: the field's
    longest), times `opacity`."""
    fx, fy = flow[0].astype(np.float32), flow[1].astype(np.float32)
    magnitude, angle = cv2.cartToPolar(fx, fy, angleInDegrees=True)
    top = float(max_magnitude) if max_magnitude else float(magnitude.max())
    hsv = np.full(fx.shape + (3,), 255, np.uint8)
    hsv[..., 0] = (angle / 2).astype(np.uint8) % 180
    hue = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR).astype(np.float32)
    alpha = np.clip(magnitude * (opacity / top), 0, opacity) if top > 0 else np.zeros_like(magnitude)
    base = np.float32(255) if background is None else background.astype(np.float32)
    return (base + (hue - base) * alpha[..., None] + 0.5).astype(np.uint8)


def color_wheel(size: int = 64, background: int = 255, opacity: float = 1.0) -> np.ndarray:
    """The legend: a (size, size, 3) BGR disc coloured as `flow_to_color` colours a vector from its centre (over a
    `background` grey level, with `opacity`), black outside the disc."""
    r = (size - 1) / 2
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    grey = np.full((size, size, 3), background, np.uint8)
    disc = flow_to_color(np.stack([x - r, y - r]), max_magnitude=r, background=grey, opacity=opacity)
    disc[(x - r) ** 2 + (y - r) ** 2 > r * r] = 0
    return disc


def _dimmed(image: np.ndarray | None, size: tuple[int, int]) -> np.ndarray:
    """The frame in grey at half brightness (a mid-grey picture without one), as BGR."""
    if image is None:
        return np.full((size[1], size[0], 3), GREY, np.uint8)
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return cv2.cvtColor(cv2.convertScaleAbs(grey, alpha=0.5, beta=16), cv2.COLOR_GRAY2BGR)


def _caption(image: np.ndarray, text: str, font_scale: float, thickness: int) -> None:
    """White `text` at the top left, on a band darkened to half brightness."""
    (tw, th), base = cv2.getTextSize(text, FONT, font_scale, thickness)
    pad = max(3, th // 3)
    band = image[: th + base + 2 * pad, : tw + 2 * pad]
    band //= 2
    cv2.putText(image, text, (pad, pad + th), FONT, font_scale, (255, 255, 255), thickness, cv2.LINE_AA)


def flow_picture(
    flow: np.ndarray,
    size: tuple[int, int],
    frame: int,
    coverage: tuple[float, float] = (1.0, 1.0),
    image: np.ndarray | None = None,
    arrows: bool = True,
) -> np.ndarray:
    """The (2, h, w) feature-resolution flow field of frame `frame` drawn over that frame: a picture of `size`
    (w, h) with a colour-wheel legend, sparse arrows (unless `arrows` is False) and a caption.

    `coverage` is the (height, width) fraction of the field that lies over the image (the rest covers padding);
    the field is upsampled bilinearly to the image's pixels, in which the vectors are also measured. `image` is the
    frame (BGR, of `size`), shown dimmed and grey under the colours; without it, a mid-grey background. Colours and
    arrows give the flow vector: from each pixel to where the model found it in the key frame.
    """
    w, h = size
    if image is not None and image.shape[:2] != (h, w):
        raise ValueError(f"the image is {image.shape[1]}x{image.shape[0]}, the picture {w}x{h}")
    full = (max(w, round(w / coverage[1])), max(h, round(h / coverage[0])))
    stride_x, stride_y = full[0] / flow.shape[2], full[1] / flow.shape[1]
    field = cv2.resize(np.ascontiguousarray(flow.transpose(1, 2, 0), np.float32), full, interpolation=cv2.INTER_LINEAR)
    fx, fy = field[:h, :w, 0] * stride_x, field[:h, :w, 1] * stride_y
    top = float(np.sqrt(fx * fx + fy * fy).max())
    picture = flow_to_color(np.stack([fx, fy]), top, _dimmed(image, size), FLOW_OPACITY)
    s = _scale(picture.shape)
    if arrows and top > 0:
        _draw_arrows(picture, fx, fy, top, s)
    if min(w, h) >= 64:
        legend = color_wheel(min(w, h) // 5, GREY, FLOW_OPACITY)
        n = legend.shape[0]
        inside = legend.any(axis=2)
        picture[h - n - 4 : h - 4, w - n - 4 : w - 4][inside] = legend[inside]
    _caption(picture, f"frame {frame}: flow to the key frame, max {top:.1f} px", 0.6 * s, max(1, round(1.5 * s)))
    return picture


def _draw_arrows(picture: np.ndarray, fx: np.ndarray, fy: np.ndarray, top: float, s: float) -> None:
    """White arrows outlined in black on a grid (about 8 on the short side), scaled so that the longest spans 90 %
    of the grid step; none where the flow is under a fifth of `top`."""
    h, w = fx.shape
    step = max(16, min(h, w) // 8)
    scale = 0.9 * step / top
    thickness = max(1, round(s))
    head = 5 * s  # pixels
    for cy in range(step // 2, h, step):
        for cx in range(step // 2, w, step):
            vx, vy = float(fx[cy, cx]) * scale, float(fy[cy, cx]) * scale
            length = (vx * vx + vy * vy) ** 0.5
            if length < 0.2 * 0.9 * step:
                continue
            tip, tip_length = (round(cx + vx), round(cy + vy)), min(0.5, head / length)
            for color, width in (((0, 0, 0), thickness + 2), ((255, 255, 255), thickness)):
                cv2.arrowedLine(picture, (cx, cy), tip, color, width, cv2.LINE_AA, tipLength=tip_length)
