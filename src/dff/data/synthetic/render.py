"""The synthetic renderer: class sprites, textured backgrounds, moving objects behind a panning camera.

Pure drawing from a NumPy generator: no files. `render_video` yields each frame with what is visible in it;
`render_det_image` draws one DET still. See `dff.data.synthetic` for the content and its guarantees.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

SYNTHETIC_CLASSES: tuple[str, ...] = (
    "airplane",
    "bus",
    "car",
    "zebra",
    "turtle",
    "watercraft",
    "bird",
    "giant_panda",
)
"""The VID classes drawn; each has its own silhouette and texture."""

SPEED_FRACTIONS: dict[str, tuple[float, float]] = {
    "slow": (0.0, 0.003),
    "medium": (0.011, 0.018),
    "fast": (0.045, 0.08),
}
"""Per-frame displacement as a fraction of the box size, per speed class."""

SCALE_RATES: dict[str, float] = {"slow": 0.0005, "medium": 0.002, "fast": 0.005}
"""Largest per-frame relative size change per speed class."""


@dataclass(frozen=True)
class Motion:
    """How the camera and objects of one shot move.

    pan: the camera's largest pan speed, pixels per frame at 480 pixels wide.
    entering: how many objects enter from the left or right border mid-shot, drawn from [low, high).
    stop_and_go: the camera and each object switch between standing still, moving and moving twice as fast
        (a switch every 12 frames on average).
    zoom: the camera zooms in and out, by up to this factor (1: no zoom), over a 30 to 80 frame period.
    """

    pan: float = 1.5
    entering: tuple[int, int] = (0, 3)
    stop_and_go: bool = False
    zoom: float = 1.0


STANDARD = Motion()
VARIED = Motion(pan=4.0, entering=(1, 4), stop_and_go=True, zoom=1.35)

MIN_VISIBLE_PIXELS = 6
MIN_VISIBLE_FRACTION = 0.15
OCCLUDED_FRACTION = 0.2

_ASPECT = {  # width / height of each class's silhouette
    "airplane": 1.7,
    "bus": 2.1,
    "car": 1.8,
    "zebra": 1.4,
    "turtle": 1.3,
    "watercraft": 1.0,
    "bird": 1.5,
    "giant_panda": 0.9,
    "other": 0.8,
}


def _pts(norm: list[tuple[float, float]], w: int, h: int) -> np.ndarray:
    return np.array([[(x * (w - 1)), (y * (h - 1))] for x, y in norm], dtype=np.float64).round().astype(np.int32)


def _fill(img: np.ndarray, norm: list[tuple[float, float]], color) -> None:
    h, w = img.shape[:2]
    cv2.fillPoly(img, [_pts(norm, w, h)], color, lineType=cv2.LINE_AA)


def _ellipse(img: np.ndarray, cx: float, cy: float, ax: float, ay: float, color, thickness: int = -1) -> None:
    h, w = img.shape[:2]
    cv2.ellipse(
        img,
        (round(cx * (w - 1)), round(cy * (h - 1))),
        (max(1, round(ax * w)), max(1, round(ay * h))),
        0,
        0,
        360,
        color,
        thickness,
        lineType=cv2.LINE_AA,
    )


def _stripes(w: int, h: int, freq: float, angle: float, phase: float) -> np.ndarray:
    """A (h, w) bool mask of parallel stripes, ``freq`` stripes across the width."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (xx * math.cos(angle) + yy * math.sin(angle)) / max(w, 1) * freq + phase
    return (t - np.floor(t)) < 0.5


def _draw_airplane(tex, mask, rng):
    h, w = mask.shape
    tex[:] = (205, 200, 195)
    tex[:, :, :] = (tex * np.linspace(0.8, 1.05, w, dtype=np.float32)[None, :, None]).astype(np.uint8)
    for m in (mask,):
        _ellipse(m, 0.5, 0.5, 0.48, 0.12, 255)
        _fill(m, [(0.38, 0.45), (0.62, 0.45), (0.46, 0.02), (0.38, 0.02)], 255)
        _fill(m, [(0.38, 0.55), (0.62, 0.55), (0.46, 0.98), (0.38, 0.98)], 255)
        _fill(m, [(0.03, 0.5), (0.14, 0.5), (0.08, 0.22), (0.03, 0.22)], 255)
        _fill(m, [(0.03, 0.5), (0.14, 0.5), (0.08, 0.78), (0.03, 0.78)], 255)
    for x in np.linspace(0.2, 0.85, 9):
        _ellipse(tex, x, 0.5, 0.012, 0.03, (60, 40, 30))
    _ellipse(tex, 0.97, 0.5, 0.03, 0.08, (40, 40, 200))


def _draw_bus(tex, mask, rng):
    tex[:] = (20, 190, 250)
    cv2.rectangle(mask, (0, 0), (mask.shape[1] - 1, round(0.86 * mask.shape[0])), 255, -1)
    for x in np.linspace(0.05, 0.8, 6):
        _fill(tex, [(x, 0.14), (x + 0.1, 0.14), (x + 0.1, 0.45), (x, 0.45)], (110, 50, 20))
    _fill(tex, [(0.86, 0.14), (0.95, 0.14), (0.95, 0.8), (0.86, 0.8)], (60, 90, 120))
    _fill(tex, [(0.0, 0.6), (1.0, 0.6), (1.0, 0.66), (0.0, 0.66)], (30, 30, 160))
    for x in (0.18, 0.78):
        _ellipse(mask, x, 0.85, 0.065, 0.14, 255)
        _ellipse(tex, x, 0.85, 0.065, 0.14, (25, 25, 25))
        _ellipse(tex, x, 0.85, 0.03, 0.06, (150, 150, 150))


def _draw_car(tex, mask, rng):
    tex[:] = (40, 30, 200)
    _fill(mask, [(0.0, 0.42), (1.0, 0.42), (1.0, 0.8), (0.0, 0.8)], 255)
    _fill(mask, [(0.22, 0.44), (0.34, 0.08), (0.68, 0.08), (0.82, 0.44)], 255)
    _fill(tex, [(0.28, 0.4), (0.37, 0.14), (0.49, 0.14), (0.49, 0.4)], (230, 220, 150))
    _fill(tex, [(0.53, 0.4), (0.53, 0.14), (0.65, 0.14), (0.75, 0.4)], (230, 220, 150))
    _fill(tex, [(0.95, 0.5), (1.0, 0.5), (1.0, 0.6), (0.95, 0.6)], (120, 240, 255))
    for x in (0.2, 0.78):
        _ellipse(mask, x, 0.8, 0.1, 0.18, 255)
        _ellipse(tex, x, 0.8, 0.1, 0.18, (20, 20, 20))
        _ellipse(tex, x, 0.8, 0.045, 0.08, (170, 170, 170))


def _draw_zebra(tex, mask, rng):
    h, w = mask.shape
    stripes = _stripes(w, h, freq=9.0, angle=1.25, phase=float(rng.random()))
    tex[:] = (235, 235, 235)
    tex[stripes] = (20, 20, 20)
    _ellipse(mask, 0.47, 0.42, 0.36, 0.27, 255)
    _fill(mask, [(0.75, 0.3), (0.84, 0.02), (0.99, 0.12), (0.9, 0.38)], 255)
    for x in (0.2, 0.3, 0.6, 0.7):
        _fill(mask, [(x, 0.55), (x + 0.06, 0.55), (x + 0.06, 0.99), (x, 0.99)], 255)


def _draw_turtle(tex, mask, rng):
    h, w = mask.shape
    tex[:] = (60, 120, 90)
    cells = _stripes(w, h, 6.0, 0.0, 0.1) ^ _stripes(h, w, 5.0, 0.0, 0.3).T[:h, :w]
    tex[cells] = (30, 80, 110)
    _ellipse(mask, 0.48, 0.5, 0.36, 0.42, 255)
    _ellipse(tex, 0.48, 0.5, 0.36, 0.42, (20, 50, 40), thickness=max(1, w // 40))
    for cx, cy in ((0.2, 0.12), (0.2, 0.88), (0.74, 0.12), (0.74, 0.88)):
        _ellipse(mask, cx, cy, 0.08, 0.1, 255)
        _ellipse(tex, cx, cy, 0.08, 0.1, (90, 170, 150))
    _ellipse(mask, 0.9, 0.5, 0.09, 0.13, 255)
    _ellipse(tex, 0.9, 0.5, 0.09, 0.13, (90, 170, 150))


def _draw_watercraft(tex, mask, rng):
    tex[:] = (245, 245, 245)
    _fill(mask, [(0.0, 0.7), (1.0, 0.7), (0.84, 0.99), (0.16, 0.99)], 255)
    _fill(tex, [(0.0, 0.7), (1.0, 0.7), (0.84, 0.99), (0.16, 0.99)], (90, 40, 20))
    _fill(tex, [(0.0, 0.7), (1.0, 0.7), (0.97, 0.76), (0.03, 0.76)], (40, 200, 240))
    _fill(mask, [(0.52, 0.02), (0.52, 0.68), (0.92, 0.68)], 255)
    _fill(mask, [(0.46, 0.1), (0.46, 0.68), (0.12, 0.68)], 255)
    _fill(tex, [(0.46, 0.1), (0.46, 0.68), (0.12, 0.68)], (80, 80, 230))
    _fill(mask, [(0.47, 0.0), (0.51, 0.0), (0.51, 0.7), (0.47, 0.7)], 255)
    _fill(tex, [(0.47, 0.0), (0.51, 0.0), (0.51, 0.7), (0.47, 0.7)], (40, 60, 90))


def _draw_bird(tex, mask, rng):
    h, w = mask.shape
    tex[:] = (200, 110, 30)
    yy, xx = np.mgrid[0:h, 0:w]
    cell = max(3, w // 10)
    dots = ((xx % cell) - cell // 2) ** 2 + ((yy % cell) - cell // 2) ** 2 < (cell // 4) ** 2
    tex[dots] = (250, 250, 250)
    _fill(mask, [(0.0, 0.05), (0.5, 0.5), (1.0, 0.05), (0.96, 0.4), (0.5, 0.95), (0.04, 0.4)], 255)
    _ellipse(tex, 0.5, 0.6, 0.1, 0.3, (120, 50, 10))
    _fill(mask, [(0.46, 0.9), (0.54, 0.9), (0.5, 1.0)], 255)
    _fill(tex, [(0.46, 0.9), (0.54, 0.9), (0.5, 1.0)], (0, 140, 255))


def _draw_panda(tex, mask, rng):
    tex[:] = (240, 240, 240)
    _ellipse(mask, 0.5, 0.66, 0.46, 0.33, 255)
    _ellipse(mask, 0.5, 0.3, 0.3, 0.24, 255)
    _fill(tex, [(0.0, 0.55), (1.0, 0.55), (1.0, 0.8), (0.0, 0.8)], (25, 25, 25))
    for x in (0.27, 0.73):
        _ellipse(mask, x, 0.1, 0.1, 0.09, 255)
        _ellipse(tex, x, 0.1, 0.1, 0.09, (25, 25, 25))
    for x in (0.38, 0.62):
        _ellipse(tex, x, 0.3, 0.07, 0.07, (25, 25, 25))
        _ellipse(tex, x, 0.29, 0.02, 0.02, (240, 240, 240))
    _ellipse(tex, 0.5, 0.42, 0.04, 0.03, (25, 25, 25))


def _draw_other(tex, mask, rng):
    """A five-pointed magenta star: a DET object of a non-VID category."""
    h, w = mask.shape
    tex[:] = (200, 40, 200)
    tex[_stripes(w, h, 5.0, 0.0, 0.0)] = (150, 20, 120)
    ang = [(-math.pi / 2 + k * math.pi / 5) for k in range(10)]
    r = [0.5 if k % 2 == 0 else 0.2 for k in range(10)]
    _fill(mask, [(0.5 + rr * math.cos(a), 0.5 + rr * math.sin(a)) for rr, a in zip(r, ang)], 255)


_DRAWERS: dict[str, Callable] = {
    "airplane": _draw_airplane,
    "bus": _draw_bus,
    "car": _draw_car,
    "zebra": _draw_zebra,
    "turtle": _draw_turtle,
    "watercraft": _draw_watercraft,
    "bird": _draw_bird,
    "giant_panda": _draw_panda,
    "other": _draw_other,
}


def make_sprite(kind: str, w: int, h: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """BGR uint8 texture (h, w, 3) and float32 alpha (h, w) of one object of class ``kind`` (or 'other')."""
    tex = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    _DRAWERS[kind](tex, mask, rng)
    jitter = rng.uniform(0.85, 1.15, size=3).astype(np.float32)
    tex = np.clip(tex.astype(np.float32) * jitter, 0, 255).astype(np.uint8)
    return tex, mask.astype(np.float32) / 255.0


def make_background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A muted, textured BGR uint8 background: smooth colour field, mid-frequency noise and clutter strokes."""
    tint = rng.uniform(90, 160, size=3).astype(np.float32)
    gh, gw = max(2, h // 48), max(2, w // 48)
    coarse = rng.uniform(-30, 30, size=(gh, gw, 1)) + rng.uniform(-12, 12, size=(gh, gw, 3))
    img = tint + cv2.resize(coarse.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    mid = rng.normal(0, 14, size=(max(2, h // 10), max(2, w // 10))).astype(np.float32)
    img += cv2.resize(mid, (w, h), interpolation=cv2.INTER_LINEAR)[..., None]
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(h * w / 2500)):
        c = tuple(int(v) for v in np.clip(tint + rng.uniform(-50, 50, 3), 0, 255))
        p = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        if rng.random() < 0.5:
            q = (p[0] + int(rng.integers(-40, 41)), p[1] + int(rng.integers(-40, 41)))
            cv2.line(img, p, q, c, int(rng.integers(1, 3)), cv2.LINE_AA)
        else:
            cv2.circle(img, p, int(rng.integers(3, 14)), c, int(rng.integers(1, 3)), cv2.LINE_AA)
    fine = rng.integers(-6, 7, size=(h, w, 1), dtype=np.int16)
    return np.clip(img.astype(np.int16) + fine, 0, 255).astype(np.uint8)


def _paste(frame: np.ndarray, tex: np.ndarray, alpha: np.ndarray, x1: int, y1: int) -> None:
    """Alpha-blend a sprite at (x1, y1), clipped to the frame."""
    h, w = alpha.shape
    H, W = frame.shape[:2]
    fx1, fy1, fx2, fy2 = max(0, x1), max(0, y1), min(W, x1 + w), min(H, y1 + h)
    if fx2 <= fx1 or fy2 <= fy1:
        return
    a = alpha[fy1 - y1 : fy2 - y1, fx1 - x1 : fx2 - x1, None]
    t = tex[fy1 - y1 : fy2 - y1, fx1 - x1 : fx2 - x1].astype(np.float32)
    region = frame[fy1:fy2, fx1:fx2]
    region[:] = (a * t + (1.0 - a) * region).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------------
# Motion: objects with a speed class, scale change, bouncing or leaving, entering mid-video.


@dataclass
class _Mover:
    trackid: int
    kind: str
    speed: str
    tex: np.ndarray
    alpha: np.ndarray
    w0: float
    h0: float
    start: int
    cx: float
    cy: float
    vx: float
    vy: float
    growth: float
    bounce: bool
    scale: float = 1.0

    def box(self) -> tuple[int, int, int, int]:
        """Full (unclipped) integer box [x1, x2) x [y1, y2) at the current state."""
        w, h = self.w0 * self.scale, self.h0 * self.scale
        x1, y1 = round(self.cx - w / 2), round(self.cy - h / 2)
        return x1, y1, x1 + max(2, round(w)), y1 + max(2, round(h))

    def step(self, width: int, height: int) -> None:
        self.cx += self.vx
        self.cy += self.vy
        self.scale = float(np.clip(self.scale * (1.0 + self.growth), 0.6, 1.6))
        if self.scale in (0.6, 1.6):
            self.growth = -self.growth
        if self.bounce:
            mx, my = 0.1 * width, 0.1 * height
            if (self.cx < mx and self.vx < 0) or (self.cx > width - mx and self.vx > 0):
                self.vx = -self.vx
            if (self.cy < my and self.vy < 0) or (self.cy > height - my and self.vy > 0):
                self.vy = -self.vy


def _new_mover(
    rng: np.random.Generator, trackid: int, width: int, height: int, num_frames: int, entering: bool
) -> _Mover:
    kind = SYNTHETIC_CLASSES[int(rng.integers(len(SYNTHETIC_CLASSES)))]
    h0 = height * rng.uniform(0.2, 0.42)
    w0 = min(h0 * _ASPECT[kind] * rng.uniform(0.9, 1.1), 0.6 * width)
    speed = ("medium", "fast")[int(rng.integers(2))] if entering else ("slow", "medium", "fast")[int(rng.integers(3))]
    frac = rng.uniform(*SPEED_FRACTIONS[speed])
    angle = rng.uniform(0, 2 * math.pi)
    vx, vy = frac * w0 * math.cos(angle), frac * h0 * math.sin(angle) * 0.6
    start = int(rng.integers(1, max(2, num_frames // 2))) if entering else 0
    if entering:  # start just outside the left or right edge, heading in
        side = -1 if rng.random() < 0.5 else 1
        cx = width / 2 + side * (width / 2 + w0 * 0.45)
        vx = -side * abs(vx)
        cy = rng.uniform(0.3, 0.7) * height
    else:
        cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.3, 0.7) * height
    growth = rng.uniform(-1, 1) * SCALE_RATES[speed]
    tex, alpha = make_sprite(kind, max(4, round(w0 * 1.6)), max(4, round(h0 * 1.6)), rng)
    return _Mover(
        trackid, kind, speed, tex, alpha, w0, h0, start, cx, cy, vx, vy, growth, bounce=bool(rng.random() < 0.6)
    )


def _visible(box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int] | None:
    """The part of a box inside the frame if it is big enough to annotate, else None."""
    x1, y1, x2, y2 = box
    vx1, vy1, vx2, vy2 = max(0, x1), max(0, y1), min(width, x2), min(height, y2)
    vw, vh = vx2 - vx1, vy2 - vy1
    if vw < MIN_VISIBLE_PIXELS or vh < MIN_VISIBLE_PIXELS:
        return None
    if vw * vh < MIN_VISIBLE_FRACTION * (x2 - x1) * (y2 - y1):
        return None
    return vx1, vy1, vx2, vy2


def _gates(rng: np.random.Generator, num_frames: int) -> list[int]:
    """Stop-and-go: per frame, how many motion steps to take (0 stopped, 1 moving, 2 fast), switching at random."""
    gates, state = [], int(rng.integers(0, 3))
    for _ in range(num_frames):
        if rng.random() < 1 / 12:
            state = int(rng.integers(0, 3))
        gates.append(state)
    return gates


def _zoom_box(box: tuple, z: float, width: int, height: int) -> tuple[int, int, int, int]:
    """A box under a zoom by z about the frame centre."""
    cx, cy = width / 2, height / 2
    x1, y1, x2, y2 = box
    return (round(cx + (x1 - cx) * z), round(cy + (y1 - cy) * z), round(cx + (x2 - cx) * z), round(cy + (y2 - cy) * z))


def _zoom_frame(frame: np.ndarray, z: float) -> np.ndarray:
    """The frame zoomed in by z >= 1 about its centre (the centre 1/z of it, resized back)."""
    h, w = frame.shape[:2]
    cw, ch = w / z, h / z
    x0, y0 = (w - cw) / 2, (h - ch) / 2
    m = np.array([[z, 0, -x0 * z], [0, z, -y0 * z]], np.float32)
    return cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def render_video(rng: np.random.Generator, width: int, height: int, num_frames: int, motion: Motion = STANDARD):
    """Draw a video (one shot); yield (frame BGR uint8, [(trackid, kind, speed, visible box, occluded, full box)],
    camera (x, y), zoom) per frame; objects in drawing order (later ones on top)."""
    mx, my = width // 5, height // 5
    canvas = make_background(height + 2 * my, width + 2 * mx, rng)
    cam = np.array([rng.uniform(0, 2 * mx), rng.uniform(0, 2 * my)])
    pan = rng.uniform(-motion.pan, motion.pan, size=2) * (width / 480.0) if rng.random() < 0.8 else np.zeros(2)
    pole = None
    if rng.random() < 0.5:
        pw = max(4, round(width * rng.uniform(0.03, 0.06)))
        pole_tex = make_background(height, pw, rng)
        pole_tex[:] = (pole_tex.astype(np.float32) * [0.35, 0.5, 0.7]).astype(np.uint8)
        pole = (float(rng.uniform(mx, mx + width - pw)), pw, pole_tex)
    n_start = int(rng.integers(1, 4))
    movers = [_new_mover(rng, i, width, height, num_frames, entering=False) for i in range(n_start)]
    for i in range(int(rng.integers(*motion.entering))):
        movers.append(_new_mover(rng, n_start + i, width, height, num_frames, entering=True))
    steps = [[1] * num_frames for _ in range(len(movers) + 1)]  # per mover, then the camera
    if motion.stop_and_go:
        steps = [_gates(rng, num_frames) for _ in range(len(movers) + 1)]
    zooms = [1.0] * num_frames
    if motion.zoom > 1.0:
        period, phase = rng.uniform(30, 80), rng.uniform(0, 2 * math.pi)
        amp = rng.uniform(0.3, 1.0) * (motion.zoom - 1.0)
        zooms = [1.0 + amp * 0.5 * (1 - math.cos(2 * math.pi * t / period + phase)) for t in range(num_frames)]
    for t in range(num_frames):
        cx, cy = int(round(cam[0])), int(round(cam[1]))
        frame = canvas[cy : cy + height, cx : cx + width].copy()
        owner = np.full((height, width), -1, np.int32)
        drawn = []
        for m in movers:
            if t < m.start:
                continue
            x1, y1, x2, y2 = m.box()
            if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
                continue
            tex = cv2.resize(m.tex, (x2 - x1, y2 - y1), interpolation=cv2.INTER_AREA)
            alpha = cv2.resize(m.alpha, (x2 - x1, y2 - y1), interpolation=cv2.INTER_AREA)
            _paste(frame, tex, alpha, x1, y1)
            own = np.zeros((height, width), bool)
            _paste_mask(own, alpha > 0.5, x1, y1)
            owner[own] = m.trackid
            drawn.append((m, (x1, y1, x2, y2), int(own.sum())))
        if pole is not None:
            px = int(round(pole[0] - cam[0]))
            _paste(frame, pole[2], np.ones(pole[2].shape[:2], np.float32), px, 0)
            owner[:, max(0, px) : max(0, px + pole[1])] = -2
        z = zooms[t]
        if z != 1.0:
            frame = _zoom_frame(frame, z)
        objects = []
        for m, box, own_px in drawn:
            box = _zoom_box(box, z, width, height) if z != 1.0 else box
            vis = _visible(box, width, height)
            if vis is None or own_px == 0:
                continue
            shown = int((owner == m.trackid).sum())
            objects.append((m.trackid, m.kind, m.speed, vis, shown < (1.0 - OCCLUDED_FRACTION) * own_px, box))
        noise = rng.integers(-2, 3, size=(height, width, 1), dtype=np.int16)
        yield np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8), objects, (cx, cy), z
        for i, m in enumerate(movers):
            if t >= m.start:
                for _ in range(steps[i][t]):
                    m.step(width, height)
        cam += pan * steps[-1][t]
        for k, hi in ((0, 2 * mx), (1, 2 * my)):
            if cam[k] < 0 or cam[k] > hi:
                pan[k] = -pan[k]
                cam[k] = float(np.clip(cam[k], 0, hi))


def _paste_mask(dst: np.ndarray, mask: np.ndarray, x1: int, y1: int) -> None:
    h, w = mask.shape
    H, W = dst.shape
    fx1, fy1, fx2, fy2 = max(0, x1), max(0, y1), min(W, x1 + w), min(H, y1 + h)
    if fx2 > fx1 and fy2 > fy1:
        dst[fy1:fy2, fx1:fx2] = mask[fy1 - y1 : fy2 - y1, fx1 - x1 : fx2 - x1]


def render_det_image(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, list[tuple[str, tuple]]]:
    """A DET still about ``width`` wide: (BGR uint8 image, [(kind, (xmin, ymin, xmax, ymax))]); kind may be 'other'."""
    w = int(round(width * rng.uniform(0.8, 1.2)))
    h = int(round(w * rng.uniform(0.6, 0.8)))
    img = make_background(h, w, rng)
    objects = []
    for _ in range(int(rng.integers(0, 4)) if rng.random() < 0.08 else int(rng.integers(1, 4))):
        kind = "other" if rng.random() < 0.15 else SYNTHETIC_CLASSES[int(rng.integers(len(SYNTHETIC_CLASSES)))]
        oh = h * rng.uniform(0.2, 0.5)
        ow = min(oh * _ASPECT[kind] * rng.uniform(0.9, 1.1), 0.8 * w)
        x1, y1 = int(rng.integers(0, max(1, w - int(ow)))), int(rng.integers(0, max(1, h - int(oh))))
        box = (x1, y1, min(w, x1 + max(4, round(ow))), min(h, y1 + max(4, round(oh))))
        tex, alpha = make_sprite(kind, box[2] - box[0], box[3] - box[1], rng)
        _paste(img, tex, alpha, box[0], box[1])
        objects.append((kind, box))
    return img, objects
