"""The key-frame sweep: speed / accuracy of DFF as key frames get rarer, fixed intervals and adaptive budgets, as a
table and a PNG plot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

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


def plot_sweep(points: Sequence[SweepPoint], path: Path, title: str = "DFF speed / accuracy") -> None:
    """AP50 (%) against fps and against the share of key frames, one line per protocol and policy (fixed
    intervals: circles; adaptive budgets: squares), per-frame detection (key interval 1) as a dotted reference line;
    each point labelled; written atomically. Points without an fps (fully resumed) appear on the second panel only.
    """
    fig = Figure(figsize=(11, 4.2))  # no pyplot: no global backend or figure state
    by_fps, by_share = fig.subplots(1, 2)
    marks = {"fixed": "o-", "adaptive": "s--"}
    for protocol in points[0].ap50 if points else {}:
        reference = next((p for p in points if p.policy == "fixed" and p.key_interval == 1), None)
        for policy in dict.fromkeys(p.policy for p in points):
            have = [p for p in points if p.policy == policy and p.ap50[protocol] is not None]
            label = protocol if policy == "fixed" else f"{protocol}, {policy}"
            timed = [p for p in have if p.fps is not None]
            if timed:
                by_fps.plot(
                    [p.fps for p in timed],
                    [100 * p.ap50[protocol] for p in timed],
                    marks.get(policy, "^-"),
                    label=label,
                )
                for p in timed:
                    by_fps.annotate(
                        p.label, (p.fps, 100 * p.ap50[protocol]), fontsize=7, textcoords="offset points", xytext=(3, 3)
                    )
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
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
