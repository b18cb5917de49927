"""The key-frame sweep: speed / accuracy of DFF as key frames get rarer, fixed intervals and adaptive budgets, as a
table and a PNG plot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from dff.io.atomic import atomic_path


@dataclass(frozen=True)
class SweepPoint:
    """One schedule (a fixed key interval, or an adaptive budget of that many frames per key frame): its fps (None
    if no frame ran in this session), mean AP50 per protocol and the share of key frames it ran."""

    key_interval: float
    fps: float | None
    ap50: dict[str, float | None]
    policy: str = "fixed"
    key_share: float | None = None

    @property
    def label(self) -> str:
        return f"k={self.key_interval:g}" if self.policy == "fixed" else f"{self.policy} {self.key_interval:g}"


def parse_intervals(text: str) -> list[int]:
    """'1,2,5,10' -> [1, 2, 5, 10]; raises ValueError on anything but distinct integers >= 1."""
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"key intervals must be comma-separated integers, got {text!r}") from None
    return check_intervals(values, text)


def check_intervals(values: Sequence[int], given: object = None) -> list[int]:
    """`values` as a list, in order; raises ValueError (showing `given`, default the values) unless they are
    distinct integers >= 1."""
    values = list(values)
    if not values or min(values) < 1 or len(set(values)) != len(values):
        raise ValueError(f"key intervals must be distinct integers >= 1, got {values if given is None else given!r}")
    return values


def sweep_table(points: Sequence[SweepPoint]) -> str:
    """A text table: key interval (or budget), policy, key-frame share, fps, then mean AP50 (%) of each protocol."""
    protocols = list(points[0].ap50) if points else []
    head = f"{'key interval':>12}{'policy':>10}{'key share':>10}{'fps':>10}" + "".join(f"{p:>15}" for p in protocols)
    rows = [head, "-" * len(head)]
    for pt in points:
        fps = "-" if pt.fps is None else f"{pt.fps:.2f}"
        share = "-" if pt.key_share is None else f"{pt.key_share:.3f}"
        cells = ("-" if pt.ap50[p] is None else f"{100 * pt.ap50[p]:.1f}" for p in protocols)
        rows.append(f"{pt.key_interval:>12g}{pt.policy:>10}{share:>10}{fps:>10}" + "".join(f"{c:>15}" for c in cells))
    return "\n".join(rows)


# Where a point's label may go, best first: (x, y) offset in points and the text's alignment there.
LABEL_PLACES = (
    ((4, 3), "left", "bottom"),
    ((4, -3), "left", "top"),
    ((-4, 3), "right", "bottom"),
    ((-4, -3), "right", "top"),
    ((0, 6), "center", "bottom"),
    ((0, -6), "center", "top"),
)


def plot_sweep(points: Sequence[SweepPoint], path: Path, title: str = "DFF speed / accuracy") -> None:
    """`sweep_figure` written as a PNG, atomically."""
    fig = sweep_figure(points, title)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)


def sweep_figure(points: Sequence[SweepPoint], title: str = "DFF speed / accuracy") -> Figure:
    """AP50 (%) against fps and against the share of key frames, one line per protocol and policy (fixed
    intervals: circles; adaptive budgets: squares), per-frame detection (key interval 1) as a dotted reference line;
    one legend below both panels. Points without an fps (fully resumed) appear on the second panel only.

    The points of the first panel are labelled ('k=10', 'adaptive 10') where a label fits: inside the axes, on no
    marker and on no other label, trying the places of `LABEL_PLACES` in turn; the first and last point of each
    line are labelled first, then the others in order, and a label that fits nowhere is left out.
    """
    fig = Figure(figsize=(11, 4.8), layout="constrained")  # no pyplot: no global backend or figure state
    FigureCanvasAgg(fig)
    by_fps, by_share = fig.subplots(1, 2)
    marks = {"fixed": "o-", "adaptive": "s--"}
    lines: list[list[tuple[str, float, float]]] = []  # each line's points on the first panel, with their labels
    for protocol in points[0].ap50 if points else {}:
        reference = next((p for p in points if p.policy == "fixed" and p.key_interval == 1), None)
        for policy in dict.fromkeys(p.policy for p in points):
            have = [p for p in points if p.policy == policy and p.ap50[protocol] is not None]
            label = protocol if policy == "fixed" else f"{protocol}, {policy}"
            timed = [p for p in have if p.fps is not None]
            if timed:
                xy = [(p.label, p.fps, 100 * p.ap50[protocol]) for p in timed]
                by_fps.plot([x for _, x, _ in xy], [y for _, _, y in xy], marks.get(policy, "^-"), label=label)
                lines.append(xy)
            shared = [p for p in have if p.key_share is not None]
            if shared:
                by_share.plot(
                    [p.key_share for p in shared],
                    [100 * p.ap50[protocol] for p in shared],
                    marks.get(policy, "^-"),
                    label=label,
                )
        if reference is not None and reference.ap50[protocol] is not None:
            for ax in (by_fps, by_share):
                ax.axhline(100 * reference.ap50[protocol], linestyle=":", linewidth=1, color="grey")
    by_fps.set(xlabel="frames per second", ylabel="AP50 (%)", title=title)
    by_share.set(xlabel="share of key frames", ylabel="AP50 (%)", xscale="log", title="AP50 by key-frame share")
    for ax in (by_fps, by_share):
        ax.grid(alpha=0.3)
    by_fps.margins(x=0.08, y=0.08)  # room for the labels of the points at the ends
    legend: dict[str, Artist] = {}  # one entry per line, whichever panel has it
    for ax in (by_fps, by_share):
        for handle, name in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(name, handle)
    if legend:
        fig.legend(legend.values(), legend.keys(), loc="outside lower center", ncol=min(len(legend), 4), fontsize=8)
    fig.canvas.draw()  # the layout is final: the label places below are measured on it
    _label_points(by_fps, lines)
    return fig


def _label_points(ax: Axes, lines: list[list[tuple[str, float, float]]]) -> None:
    """Label the points of `lines` (label, x, y) on `ax` where the label fits (see `sweep_figure`)."""
    renderer = ax.figure.canvas.get_renderer()
    to_pixels = ax.figure.dpi / 72
    marker = 4 * to_pixels  # half a marker's size, in pixels
    axes = ax.get_window_extent(renderer)
    xy = [(text, x, y, *ax.transData.transform((x, y))) for line in lines for text, x, y in line]
    taken = [Bbox.from_extents(px - marker, py - marker, px + marker, py + marker) for *_, px, py in xy]
    for line in lines:  # the lines between the points: a small box every few pixels along them
        corners = ax.transData.transform([(x, y) for _, x, y in line])
        for (x0, y0), (x1, y1) in zip(corners[:-1], corners[1:]):
            steps = max(1, int(((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5 / marker))
            for t in (k / steps for k in range(1, steps)):
                cx, cy = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
                taken.append(Bbox.from_extents(cx - 1, cy - 1, cx + 1, cy + 1))
    ends, start = [], 0
    for line in lines:
        ends += [start, start + len(line) - 1]
        start += len(line)
    order = list(dict.fromkeys(ends + list(range(len(xy)))))  # each line's first and last point first
    for i in order:
        text, x, y, px, py = xy[i]
        label = ax.annotate(text, (x, y), xytext=(0, 0), textcoords="offset points", fontsize=7)
        label.set_in_layout(False)
        box = label.get_window_extent(renderer)
        w, h = box.width, box.height
        for (dx, dy), ha, va in LABEL_PLACES:
            x0 = px + dx * to_pixels - {"left": 0, "center": w / 2, "right": w}[ha]
            y0 = py + dy * to_pixels - {"bottom": 0, "top": h}[va]
            place = Bbox.from_bounds(x0, y0, w, h).padded(1.5)
            inside = axes.x0 <= place.x0 and place.x1 <= axes.x1 and axes.y0 <= place.y0 and place.y1 <= axes.y1
            if inside and place.count_overlaps(taken) == 0:
                label.xyann = (dx, dy)
                label.set(ha=ha, va=va)
                taken.append(place)
                break
        else:
            label.remove()
