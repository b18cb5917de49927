"""The report of `dff benchmark`: machine description, the report record, detection agreement, the text tables."""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from dff.api import FrameResult

# The stages a frame's time is split into (engine.StageTimer), in the order of the tables.
STAGES = ("preprocess", "backbone", "flow", "warp", "policy", "rpn", "roi_head", "postprocess", "other")


def agreement(a: Sequence[FrameResult], b: Sequence[FrameResult], top: int = 20) -> dict:
    """How far b's detections are from a's: per frame, each of a's top detections needs a same-label detection
    of b within 0.05 px and 1e-4 in score (the golden tolerances); worst box and score distances of matches."""
    ok, worst_box, worst_score = True, 0.0, 0.0
    for ra, rb in zip(a, b):
        for i in range(min(top, len(ra.scores))):
            same = rb.labels == ra.labels[i]
            if not same.any():
                ok = False
                continue
            dbox = np.abs(rb.boxes[same] - ra.boxes[i]).max(axis=1)
            dscore = np.abs(rb.scores[same] - ra.scores[i])
            j = int(np.argmin(dbox + dscore))
            worst_box, worst_score = max(worst_box, float(dbox[j])), max(worst_score, float(dscore[j]))
            ok &= bool(dbox[j] <= 0.05 and dscore[j] <= 1e-4)
    return {"within_golden_tolerance": ok, "max_box_px": worst_box, "max_score": worst_score}


def machine_info(device: torch.device) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


@dataclass
class BenchmarkReport:
    """Everything `dff benchmark` prints and writes as JSON."""

    date: str
    machine: dict
    preset: str
    weights: str
    source: str
    frame_size: list[int]
    input_size: list[int]
    frames: int
    warmup: int
    gflops: dict
    matmul_peak_gflops: dict
    load_average: dict
    command: str = ""
    settings: dict = field(default_factory=dict)
    ratios: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def format_report(report: BenchmarkReport) -> str:
    """The human-readable tables of a report."""
    m = report.machine
    lines = [
        *([f"$ {report.command}"] if report.command else []),
        f"{report.date}  {m['cpu']} ({m['cpu_count']} CPUs, {m['torch_threads']} torch threads), torch {m['torch']}, "
        f"device {m['device']}{' ' + m['gpu'] if 'gpu' in m else ''}",
        f"load average (1/5/15 min): start {_load(report.load_average['start'])}, "
        f"end {_load(report.load_average['end'])}",
        f"{report.preset} on {report.source}: {report.frames} frames {report.frame_size[0]}x{report.frame_size[1]} -> "
        f"input {report.input_size[0]}x{report.input_size[1]}, warm-up {report.warmup} frames; "
        f"weights {report.weights}",
        "GFLOPs per frame: key {:.1f}, non-key {}".format(
            report.gflops["key"], "-" if report.gflops["non_key"] is None else f"{report.gflops['non_key']:.1f}"
        ),
        "matmul peak (GFLOP/s): " + ", ".join(f"{k} {v:.1f}" for k, v in report.matmul_peak_gflops.items()),
        "",
        f"{'setting':<22}{'fps':>7}{'fps(med)':>9}{'key p50':>9}{'key p90':>9}{'nonkey p50':>11}{'nonkey p90':>11}"
        f"{'nk/key':>8}{'GF/frame':>9}{'key %peak':>10}{'peak mem':>10}",
    ]
    for label, s in report.settings.items():
        lines.append(
            f"{label:<22}{s['fps']:>7.3f}{s.get('fps_median', math.nan):>9.3f}"
            f"{_ms(s['key'].get('median')):>9}{_ms(s['key'].get('p90')):>9}"
            f"{_ms(s['non_key'].get('median')):>11}{_ms(s['non_key'].get('p90')):>11}"
            f"{s.get('non_key_over_key', math.nan):>8.3f}{s['gflops_per_frame']:>9.1f}"
            f"{100 * s.get('key_fraction_of_peak', math.nan):>9.1f}%{s['peak_memory_bytes'] / 2**30:>8.2f}GiB"
        )
    lines += [
        "",
        "stage medians, ms (key frames | non-key frames):",
        f"{'setting':<22}{'frames':>8}" + "".join(f"{s:>12}" for s in STAGES),
    ]
    for label, s in report.settings.items():
        for kind in ("key", "non_key"):
            med = s["stages_median"].get(kind)
            if med:
                name = label if kind == "key" else ""
                lines.append(f"{name:<22}{kind:>8}" + "".join(f"{1000 * med[st]:>12.1f}" for st in STAGES))
    agreements = [(label, s["agreement"]) for label, s in report.settings.items() if s["agreement"] is not None]
    if agreements:
        lines += ["", "detections (top 20 per frame) against the first setting at the same interval:"]
        for label, a in agreements:
            verdict = "within" if a["within_golden_tolerance"] else "OUTSIDE"
            lines.append(
                f"  {label:>22} vs {a['baseline']:<22} {verdict} golden tolerance "
                f"(max |d box| {a['max_box_px']:.4f} px, max |d score| {a['max_score']:.2e})"
            )
    if report.ratios:
        lines += ["", "throughput ratios (overall fps | from medians):"]
        for r in report.ratios:
            lines.append(
                f"  {r['setting']:>22} / {r['baseline']:<22} {r['throughput']:6.2f}x | "
                f"{r['throughput_from_medians']:6.2f}x"
            )
    return "\n".join(lines)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1000 * seconds:.1f}"


def _load(values: list[float] | None) -> str:
    return "n/a" if not values else "/".join(f"{v:.2f}" for v in values)
