"""The key-interval sweep: speed / accuracy of DFF as the key frame gets rarer, as a table and a PNG plot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from dff.io.atomic import atomic_path


@dataclass(frozen=True)
class SweepPoint:
    """One key interval: its fps (None if no frame ran in this session) and mean AP50 per protocol."""

    key_interval: int
    fps: float | None
    ap50: dict[str, float | None]


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
    """A text table: key interval, fps, then mean AP50 (%) of each protocol."""
    protocols = list(points[0].ap50) if points else []
    head = f"{'key interval':>12}{'fps':>10}" + "".join(f"{p:>15}" for p in protocols)
    rows = [head, "-" * len(head)]
    for pt in points:
        fps = "-" if pt.fps is None else f"{pt.fps:.2f}"
        cells = ("-" if pt.ap50[p] is None else f"{100 * pt.ap50[p]:.1f}" for p in protocols)
        rows.append(f"{pt.key_interval:>12}{fps:>10}" + "".join(f"{c:>15}" for c in cells))
    return "\n".join(rows)


def plot_sweep(points: Sequence[SweepPoint], path: Path, title: str = "DFF speed / accuracy") -> None:
    """AP50 (%) against fps, one line per protocol, each point labelled with its key interval; written atomically.

    Points without an fps (fully resumed) are placed by key interval on a second panel so none is lost.
    """
    fig = Figure(figsize=(11, 4.2))  # no pyplot: no global backend or figure state
    by_fps, by_k = fig.subplots(1, 2)
    for protocol in points[0].ap50 if points else {}:
        have = [p for p in points if p.ap50[protocol] is not None]  # a protocol without ground truth has no line
        timed = [p for p in have if p.fps is not None]
        if timed:
            by_fps.plot([p.fps for p in timed], [100 * p.ap50[protocol] for p in timed], "o-", label=protocol)
            for p in timed:
                by_fps.annotate(
                    f"k={p.key_interval}",
                    (p.fps, 100 * p.ap50[protocol]),
                    fontsize=7,
                    textcoords="offset points",
                    xytext=(3, 3),
                )
        if have:
            by_k.plot([p.key_interval for p in have], [100 * p.ap50[protocol] for p in have], "o-", label=protocol)
    by_fps.set(xlabel="frames per second", ylabel="AP50 (%)", title=title)
    by_k.set(xlabel="key interval", ylabel="AP50 (%)", xscale="log", title="AP50 by key interval")
    by_k.set_xticks([p.key_interval for p in points], [str(p.key_interval) for p in points])
    for ax in (by_fps, by_k):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
