"""Pictures of results: boxes with class names, scores and track ids, track trails, a key-frame marker, and flow
fields as colour.

Flow colours follow the usual colour-wheel convention: the hue gives the direction of motion, the saturation its
magnitude (white = still), normalised by the largest motion in the field unless a fixed `max_magnitude` is given.
"""

from __future__ import annotations

import colorsys
from collections import deque

import cv2
import numpy as np

KEY_COLOR = (40, 40, 230)  # BGR red
WARP_COLOR = (140, 140, 140)


def class_color(class_id: int) -> tuple[int, int, int]:
    """A bright BGR colour per class, well spread around the hue circle (golden-ratio steps)."""
    r, g, b = colorsys.hsv_to_rgb((class_id * 0.618033988749895) % 1.0, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def _scale(image: np.ndarray) -> float:
    """Line and font scale for an image: 1.0 at 720 pixels on the short side, never below 0.7 (legible)."""
    return max(0.7, min(image.shape[:2]) / 720.0)


def draw_detections(
    image: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    class_names: tuple[str, ...],
    track_ids: np.ndarray | None = None,
) -> np.ndarray:
    """A copy of the BGR `image` with each box (xyxy, original pixels) and its 'name 0.87' label drawn, prefixed
    by '#7 ' when `track_ids` gives the box a track (ids < 0 are in no track)."""
    out = image.copy()
    s = _scale(out)
    thickness = max(1, round(2 * s))
    font_scale = 0.6 * s
    h, w = out.shape[:2]
    ids = [-1] * len(scores) if track_ids is None else [int(i) for i in track_ids]
    for (x1, y1, x2, y2), score, label, track_id in zip(boxes.tolist(), scores.tolist(), labels.tolist(), ids):
        color = class_color(int(label))
        p1, p2 = (int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2)))
        cv2.rectangle(out, p1, p2, color, thickness, cv2.LINE_AA)
        text = f"{class_names[int(label)]} {score:.2f}"
        if track_id >= 0:
            text = f"#{track_id} {text}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, max(1, thickness - 1))
        tx = min(max(0, p1[0]), max(0, w - tw - 4))
        ty = p1[1] - th - base - 2 if p1[1] - th - base - 2 >= 0 else min(p1[1], h - th - base - 2)
        cv2.rectangle(out, (tx, ty), (tx + tw + 4, ty + th + base + 2), color, cv2.FILLED)
        cv2.putText(
            out,
            text,
            (tx + 2, ty + th + 1),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            (0, 0, 0),
            max(1, thickness - 1),
            cv2.LINE_AA,
        )
    return out


class TrackTrails:
    """The box centres of each track over its last `length` frames, drawn as a polyline per track (a colour per
    track id); feed every frame in order with :meth:`update`."""

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
        thickness = max(1, round(2 * _scale(image)))
        for track_id in {int(i) for i in np.asarray(track_ids).tolist() if i >= 0}:
            points = [p for frame, p in self._points.get(track_id, ()) if frame > self._frame - self.length]
            if len(points) > 1:
                color = class_color(track_id)  # the golden-ratio hues spread track ids as well as classes
                cv2.polylines(image, [np.array(points, np.int32)], False, color, thickness, cv2.LINE_AA)
        return image


def draw_frame_marker(image: np.ndarray, frame: int, is_key_frame: bool) -> np.ndarray:
    """Draw in place, top-left, 'KEY <frame>' on a red badge for key frames, 'flow <frame>' in grey otherwise."""
    s = _scale(image)
    text = f"{'KEY' if is_key_frame else 'flow'} {frame}"
    font_scale, thickness = 0.7 * s, max(1, round(2 * s))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
    pad = max(3, round(6 * s))
    color = KEY_COLOR if is_key_frame else WARP_COLOR
    cv2.rectangle(image, (0, 0), (tw + 2 * pad, th + base + 2 * pad), color, cv2.FILLED)
    cv2.putText(
        image, text, (pad, pad + th), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), thickness, cv2.LINE_AA
    )
    return image


def flow_to_color(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """A (2, h, w) flow field (channel 0 = x, 1 = y) as a uint8 BGR (h, w, 3) colour-wheel image."""
    fx, fy = flow[0].astype(np.float32), flow[1].astype(np.float32)
    magnitude, angle = cv2.cartToPolar(fx, fy, angleInDegrees=True)
    top = float(max_magnitude) if max_magnitude else float(magnitude.max())
    hsv = np.empty(fx.shape + (3,), np.uint8)
    hsv[..., 0] = (angle / 2).astype(np.uint8) % 180
    saturation = magnitude * (255.0 / top) if top > 0 else np.zeros_like(magnitude)
    hsv[..., 1] = np.clip(saturation, 0, 255).astype(np.uint8)
    hsv[..., 2] = 255
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def color_wheel(size: int = 64) -> np.ndarray:
    """The legend: a (size, size, 3) BGR disc coloured as `flow_to_color` colours a vector from its centre."""
    r = (size - 1) / 2
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    disc = flow_to_color(np.stack([x - r, y - r]), max_magnitude=r)
    disc[(x - r) ** 2 + (y - r) ** 2 > r * r] = 0
    return disc


def flow_picture(
    flow: np.ndarray, size: tuple[int, int], frame: int, coverage: tuple[float, float] = (1.0, 1.0)
) -> np.ndarray:
    """The flow field drawn over an image of `size` (w, h), with a colour-wheel legend and a caption.

    `coverage` is the (height, width) fraction of the field that lies over the image (the rest covers padding);
    cells are blown up with nearest-neighbour so that the feature-map resolution stays visible.
    """
    w, h = size
    full = (max(w, round(w / coverage[1])), max(h, round(h / coverage[0])))
    picture = cv2.resize(flow_to_color(flow), full, interpolation=cv2.INTER_NEAREST)[:h, :w].copy()
    if min(w, h) >= 64:
        legend = color_wheel(min(w, h) // 5)
        n = legend.shape[0]
        inside = legend.any(axis=2)
        picture[h - n - 4 : h - 4, w - n - 4 : w - 4][inside] = legend[inside]
    peak = float(np.hypot(flow[0], flow[1]).max())
    s = _scale(picture)
    cv2.putText(
        picture,
        f"frame {frame}  max {peak:.2f} feature px",
        (6, round(24 * s)),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.6 * s,
        (0, 0, 0),
        max(1, round(1.5 * s)),
        cv2.LINE_AA,
    )
    return picture
