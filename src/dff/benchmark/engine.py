"""Timing engine of `dff benchmark`: per-frame and per-stage timings of several settings, run interleaved.

A setting is an inference path (the reference network op for op as mmtracking runs it, or the fast network, in a
dtype) at a key-frame interval. Every setting processes the same decoded frames from frame 0 in order; the frames
are split into chunks (of the least common multiple of the intervals) and the settings take turns chunk by chunk,
so that a change of machine load hits all of them alike. Before timing, each setting runs `warmup` frames and
then starts a fresh video.

Frame time is measured from asking for the next preprocessed frame to having its numpy detections. Stages are
timed with forward pre/post hooks on the network's stage modules: backbone (+neck), flow, warp, rpn (head +
proposals), roi_head (RoIAlign + box head); preprocess is the time spent waiting for the preprocessed frame
(the preprocessing itself runs in a background thread when prefetching; its own duration is reported as
preprocess_worker), postprocess runs from the end of the box head to the numpy result; `other` is what remains.
GFLOPs are counted once with torch's FlopCounterMode on the reference network (convolutions and matrix products;
every setting does the same arithmetic), for one key and one non-key frame. The matmul peak is the best of
several large fp32 (or the setting's dtype) `torch.mm` on the same threads.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from dff.api import DFFModel, FrameInput, VideoSession
from dff.benchmark.report import STAGES, BenchmarkReport, agreement, machine_info
from dff.data.transforms import image_meta
from dff.io.result import FrameResult
from dff.keyframes import POLICIES, FixedInterval, Incoming, KeyFramePolicy, Propagated, make_policy
from dff.models.precision import DTYPES
from dff.run import REFERENCE, RunOptions

log = logging.getLogger(__name__)


_STAGE_OF_MODULE = {
    "detector.backbone": "backbone",
    "detector.neck": "backbone",
    "motion": "flow",
    "warp": "warp",
    "detector.rpn_head": "rpn",
    "detector.proposal_generator": "rpn",
    "detector.roi_head": "roi_head",
}


PATHS = ("reference", "fast", "onnx")


@dataclass(frozen=True)
class Setting:
    """One configuration to time: 'reference', 'fast' (with a dtype) or 'onnx' (the exported stages on
    onnxruntime, fp32) at a key-frame interval, or with the adaptive policy at that budget."""

    path: str
    dtype: str
    key_interval: int
    policy: str = "fixed"

    @property
    def label(self) -> str:
        dtype = "" if self.dtype == "fp32" else f"-{self.dtype}"
        policy = "adaptive" if self.policy == "adaptive" else ""
        return f"{self.path}{dtype}@{policy}{self.key_interval}"

    def run(self, device: torch.device) -> RunOptions:
        """The run options of this setting (the reference path as mmtracking runs it: serial preprocessing)."""
        base = REFERENCE if self.path == "reference" else RunOptions(backend=self.path, dtype=self.dtype)
        return replace(base, device=str(device), key_policy=self.key_policy())

    def model(self, net: nn.Module, onnx_manifest: Path | None) -> DFFModel:
        """The model this setting runs: `net`, or the ONNX export of it."""
        if self.path != "onnx":
            return DFFModel(net)
        from dff.export.runtime import load_onnx

        return DFFModel(load_onnx(onnx_manifest))

    def key_policy(self) -> KeyFramePolicy:
        k = self.key_interval
        return make_policy(self.policy, k, k if self.policy == "adaptive" else None)


def parse_settings(
    compare: Sequence[str], intervals: Sequence[int], dtype: str = "fp32", policies: Sequence[str] = ("fixed",)
) -> list[Setting]:
    """['reference', 'fast:bf16'] x policies x [1, 10] -> settings, path-major; a bare 'fast' takes `dtype`; the
    adaptive policy takes each interval > 1 as its budget."""
    for policy in policies:
        if policy not in POLICIES:
            raise ValueError(f"unknown key policy {policy!r}; choose from {', '.join(POLICIES)}")
    settings = []
    for spec in compare:
        path, _, dt = spec.strip().partition(":")
        if path not in PATHS:
            raise ValueError(f"unknown setting {spec!r}: use reference, fast, fast:<dtype> or onnx")
        dt = dt or (dtype if path == "fast" else "fp32")
        if dt not in DTYPES:
            raise ValueError(f"unknown dtype {dt!r} in {spec!r}; choose from {', '.join(DTYPES)}")
        if path in ("reference", "onnx") and dt != "fp32":
            raise ValueError(f"the {path} path runs in fp32 only")
        for policy in policies:
            settings += [Setting(path, dt, int(k), policy) for k in intervals if policy == "fixed" or int(k) > 1]
    if len(set(settings)) != len(settings):
        raise ValueError("a setting is listed twice")
    return settings


@dataclass
class FrameTiming:
    """Wall seconds of one frame and of its stages."""

    index: int
    is_key: bool
    seconds: float
    stages: dict[str, float]
    preprocess_worker: float


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class StageTimer:
    """Forward pre/post hooks on the stage modules of one or more networks, adding wall time to `current`."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.current: dict[str, float] | None = None
        self.roi_end: float | None = None
        self.peak_rss = 0
        self._starts: dict[str, float] = {}
        self._handles: list = []
        self._hooked: set[int] = set()

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def attach(self, net: nn.Module) -> None:
        """Hook `net`'s stage modules; hook registries shared with a net already attached are not hooked twice."""
        for name, stage in _STAGE_OF_MODULE.items():
            module = net.get_submodule(name)
            if id(module._forward_pre_hooks) not in self._hooked:
                self._hooked.add(id(module._forward_pre_hooks))
                self._handles.append(module.register_forward_pre_hook(self._pre(stage)))
            if id(module._forward_hooks) not in self._hooked:
                self._hooked.add(id(module._forward_hooks))
                self._handles.append(module.register_forward_hook(self._post(stage)))

    def _pre(self, stage: str) -> Callable:
        def hook(module: nn.Module, args: tuple) -> None:
            if self.current is not None:
                self._starts[stage] = self._now()

        return hook

    def _post(self, stage: str) -> Callable:
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            if self.current is None or stage not in self._starts:
                return
            now = self._now()
            self.current[stage] = self.current.get(stage, 0.0) + now - self._starts.pop(stage)
            if stage == "roi_head":
                self.roi_end = now
            if not self.cuda:
                self.peak_rss = max(self.peak_rss, _rss_bytes())

        return hook

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._hooked.clear()


class TimedPolicy:
    """A key-frame policy whose calls add their wall time to the timer's "policy" stage."""

    def __init__(self, policy: KeyFramePolicy, timer: StageTimer) -> None:
        self.policy, self.timer = policy, timer

    def _timed(self, name: str, *args: object) -> object:
        start = self.timer._now()
        out = getattr(self.policy, name)(*args)
        if self.timer.current is not None:
            self.timer.current["policy"] = self.timer.current.get("policy", 0.0) + self.timer._now() - start
        return out

    def reset(self) -> None:
        self._timed("reset")

    def before(self, frame: Incoming) -> str | None:
        return self._timed("before", frame)

    def after(self, frame: Propagated) -> str | None:
        return self._timed("after", frame)

    def key_frame(self, frame: Incoming, reason: str) -> None:
        self._timed("key_frame", frame, reason)


class _Run:
    """One setting's model, input stream, video session and records."""

    def __init__(
        self,
        net: nn.Module,
        device: torch.device,
        setting: Setting,
        frames: Sequence[np.ndarray],
        onnx_manifest: Path | None = None,
    ) -> None:
        self.setting = setting
        self.model = setting.model(net, onnx_manifest)
        self.run = setting.run(device)
        self.net = self.model.network(self.run)  # chosen before the timer's hooks exist, kept for the whole run
        self.frames = frames
        self.records: list[FrameTiming] = []
        self.results: list[FrameResult] = []
        self.peak_memory = 0
        self._inputs = None
        self.restart()

    def restart(self) -> None:
        """A fresh video from frame 0 (the previous input thread is stopped)."""
        if self._inputs is not None:
            self._inputs.close()
        self._inputs = self.model.inputs(self.frames, self.run)
        self.session = VideoSession(self.net, self.run, self.model.class_names)

    def step(self, timer: StageTimer, record: bool) -> None:
        timer.current, timer.roi_end = {}, None
        start = timer._now()
        inp: FrameInput = next(self._inputs)
        got = timer._now()
        result = self.session.step(inp)
        end = timer._now()
        stages, timer.current = timer.current, None
        stages["preprocess"] = got - start
        stages["postprocess"] = end - timer.roi_end if timer.roi_end is not None else 0.0
        stages["other"] = max(0.0, (end - start) - sum(stages.values()))
        if record:
            self.records.append(FrameTiming(inp.index, result.is_key_frame, end - start, stages, inp.preprocess_s))
            self.results.append(result)

    def close(self) -> None:
        self._inputs.close()


def matmul_peak(
    device: torch.device, dtype: torch.dtype = torch.float32, repeats: int = 5, n: int | None = None
) -> float:
    """Best GFLOP/s of a large square n x n `torch.mm` (default n=4096 on CPU, 8192 on GPU) on the current threads."""
    n = n or (8192 if device.type == "cuda" else 4096)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = math.inf
    with torch.inference_mode():
        torch.mm(a, b)
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            torch.mm(a, b)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def frame_flops(net: nn.Module, device: torch.device, frames: Sequence[np.ndarray]) -> tuple[float, float | None]:
    """(key, non-key) GFLOPs of the reference network on frames[0] (key) and frames[1] (non-key)."""
    model = DFFModel(net)
    run = replace(REFERENCE, device=str(device), key_policy=FixedInterval(max(2, len(frames))))
    session, counts = model.session(run), []
    for inp in model.inputs(frames[:2], run):
        counter = FlopCounterMode(display=False)
        with counter:
            session.step(inp)
        counts.append(counter.get_total_flops() / 1e9)
    return counts[0], counts[1] if len(counts) > 1 else None


def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def time_summary(values: Sequence[float]) -> dict[str, float]:
    """count, mean, median, p10, p90, p99, min, max of seconds."""
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "p10": _pct(values, 10),
        "p90": _pct(values, 90),
        "p99": _pct(values, 99),
        "min": min(values),
        "max": max(values),
    }


def summarize(records: Sequence[FrameTiming], key_interval: int, fixed: bool = True) -> dict:
    """Timing summary of one setting: frame times (all / key / non-key), stage medians, fps. fps(med) weighs the
    key and non-key medians by the schedule: 1 / key_interval key frames, or the share measured (`fixed` False)."""
    key = [r for r in records if r.is_key]
    nonkey = [r for r in records if not r.is_key]
    total = sum(r.seconds for r in records)
    out = {
        "frames": len(records),
        "key_frames": len(key),
        "fps": len(records) / total if total > 0 else float("nan"),
        "all": time_summary([r.seconds for r in records]),
        "key": time_summary([r.seconds for r in key]),
        "non_key": time_summary([r.seconds for r in nonkey]),
        "stages_median": {
            kind: {s: statistics.median([r.stages.get(s, 0.0) for r in group]) for s in STAGES}
            for kind, group in (("key", key), ("non_key", nonkey))
            if group
        },
        "preprocess_worker_median": statistics.median([r.preprocess_worker for r in records]) if records else None,
    }
    k_med = out["key"].get("median")
    n_med = out["non_key"].get("median", 0.0) if key_interval > 1 else 0.0
    if k_med is not None and (key_interval == 1 or out["non_key"]["count"]):
        share = 1 / key_interval if fixed else len(key) / len(records)
        out["key_share"] = share
        out["fps_median"] = 1 / (share * k_med + (1 - share) * n_med)
        if key_interval > 1:
            out["non_key_over_key"] = n_med / k_med
    return out


def run_benchmark(
    net: nn.Module,
    device: torch.device,
    frames: Sequence[np.ndarray],
    settings: Sequence[Setting],
    *,
    warmup: int = 10,
    weights: str = "",
    source: str = "",
    progress: Callable[[str], None] | None = None,
    matmul_size: int | None = None,
) -> BenchmarkReport:
    """Time every setting on `frames` (decoded BGR arrays of one video), interleaved; see the module docstring."""
    if not settings:
        raise ValueError("no setting to run")
    if len(frames) < 2:
        raise ValueError("need at least 2 frames")
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    say = progress or (lambda msg: log.info(msg))
    peaks = {}
    for dt in sorted({s.dtype for s in settings} | {"fp32"}):
        say(f"measuring the {dt} matmul peak")
        peaks[dt] = matmul_peak(device, DTYPES[dt], n=matmul_size)
    say("counting FLOPs")
    key_gf, nonkey_gf = frame_flops(net, device, frames)
    exports = tempfile.TemporaryDirectory(prefix="dff-benchmark-onnx-")
    manifest = None
    if any(s.path == "onnx" for s in settings):
        from dff.export.onnx import export_onnx

        say("exporting the stages to ONNX")
        manifest = export_onnx(net, exports.name)
    runs = [_Run(net, device, s, frames, manifest) for s in settings]
    timer = StageTimer(device)
    try:
        warm = min(warmup, len(frames))
        for run in runs:
            say(f"warm-up {run.setting.label} ({warm} frames)")
            for _ in range(warm):
                run.step(timer, record=False)
            run.restart()
            if isinstance(run.net, nn.Module):  # an ONNX network has no modules to hook: frame times only
                timer.attach(run.net)
            run.session.policy = TimedPolicy(run.session.policy, timer)
        chunk = math.lcm(*(s.key_interval for s in settings))
        say(f"timing {len(frames)} frames x {len(runs)} settings, interleaved in chunks of {chunk}")
        bar = tqdm(total=len(frames) * len(runs), unit="frame", desc="timing", disable=progress is None, leave=False)
        for start in range(0, len(frames), chunk):
            for run in runs:
                timer.peak_rss = 0
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                for _ in range(min(chunk, len(frames) - start)):
                    run.step(timer, record=True)
                    bar.update(1)
                peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else timer.peak_rss
                run.peak_memory = max(run.peak_memory, peak)
        bar.close()
    finally:
        timer.close()
        exports.cleanup()
        for run in runs:
            run.close()
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else None
    h, w = frames[0].shape[:2]
    pad_h, pad_w = image_meta(h, w, net.cfg.preprocess).pad_shape
    report = BenchmarkReport(
        date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        machine=machine_info(device),
        preset=net.cfg.name,
        weights=weights,
        source=source,
        frame_size=[w, h],
        input_size=[pad_w, pad_h],
        frames=len(frames),
        warmup=warmup,
        gflops={"key": key_gf, "non_key": nonkey_gf},
        matmul_peak_gflops=peaks,
        load_average={"start": list(load_start) if load_start else None, "end": list(load_end) if load_end else None},
    )
    for run in runs:
        s = run.setting
        summary = summarize(run.records, s.key_interval, fixed=s.policy == "fixed")
        share = summary.get("key_share", 1 / s.key_interval)
        gf = key_gf if s.key_interval == 1 else share * key_gf + (1 - share) * nonkey_gf
        summary["gflops_per_frame"] = gf
        k_med = summary["key"].get("median")
        if k_med:
            summary["key_gflops_per_s"] = key_gf / k_med
            summary["key_fraction_of_peak"] = key_gf / k_med / peaks[s.dtype]
        summary["peak_memory_bytes"] = run.peak_memory
        summary["peak_memory_kind"] = (
            "cuda max_memory_allocated"
            if device.type == "cuda"
            else "process RSS, highest sampled during this setting's frames"
        )
        base = _baseline(runs, s)
        same = base is run or base.setting.policy != s.policy  # other key frames: detections not comparable
        summary["agreement"] = (
            None if same else {"baseline": base.setting.label, **agreement(base.results, run.results)}
        )
        summary["setting"] = asdict(s)
        summary["records"] = [asdict(r) for r in run.records]
        report.settings[s.label] = summary
    report.ratios = ratios(runs, report.settings)
    return report


def _baseline(runs: Sequence[_Run], s: Setting) -> _Run:
    """The first run at the same key interval as s."""
    return next(r for r in runs if r.setting.key_interval == s.key_interval)


def ratios(runs: Sequence[_Run], summaries: dict) -> list[dict]:
    """Throughput ratios: each setting against the first one at the same interval, and DFF@k against @1."""
    out = []
    settings = [r.setting for r in runs]
    for s in settings:
        base = _baseline(runs, s).setting
        if base != s:
            out.append(_ratio(s.label, base.label, summaries))
        if s.key_interval > 1:
            per_frame = next(
                (b for b in settings if b.key_interval == 1 and (b.path, b.dtype) == (s.path, s.dtype)), None
            )
            if per_frame is not None:
                out.append(_ratio(s.label, per_frame.label, summaries))
    return out


def _ratio(a: str, b: str, summaries: dict) -> dict:
    sa, sb = summaries[a], summaries[b]
    return {
        "setting": a,
        "baseline": b,
        "throughput": sa["fps"] / sb["fps"],
        "throughput_from_medians": sa.get("fps_median", math.nan) / sb.get("fps_median", math.nan),
    }
